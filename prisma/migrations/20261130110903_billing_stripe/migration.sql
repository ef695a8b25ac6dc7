-- CreateEnum
CREATE TYPE "stripe_report_status" AS ENUM ('PENDING', 'SENT', 'FAILED');

-- AlterTable
ALTER TABLE "usage_overages" ADD COLUMN     "stripe_invoice_id" TEXT,
ADD COLUMN     "stripe_invoice_item_id" TEXT;

-- CreateTable
CREATE TABLE "billing_connections" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "mode" "api_key_environment" NOT NULL,
    "secret_key_cipher" TEXT NOT NULL,
    "webhook_secret_cipher" TEXT NOT NULL,
    "key_hint" TEXT NOT NULL,
    "currency" TEXT NOT NULL DEFAULT 'usd',
    "report_from" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "billing_connections_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "billing_meters" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "mode" "api_key_environment" NOT NULL,
    "usage_type" TEXT NOT NULL,
    "event_name" TEXT NOT NULL,
    "stripe_meter_id" TEXT,
    "unit_multiplier" DECIMAL(30,12) NOT NULL DEFAULT 1,
    "stripe_price_id" TEXT,
    "unit_amount_decimal" DECIMAL(30,12),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "billing_meters_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "billing_plan_prices" (
    "tenant_id" UUID NOT NULL,
    "mode" "api_key_environment" NOT NULL,
    "stripe_price_id" TEXT NOT NULL,
    "plan_code" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "billing_plan_prices_pkey" PRIMARY KEY ("tenant_id","mode","stripe_price_id")
);

-- CreateTable
CREATE TABLE "billing_streams" (
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "meter_id" UUID NOT NULL,
    "carry_units" DECIMAL(40,12) NOT NULL DEFAULT 0,

    CONSTRAINT "billing_streams_pkey" PRIMARY KEY ("tenant_id","license_id","meter_id")
);

-- CreateTable
CREATE TABLE "billing_report_windows" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "meter_id" UUID NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "metered_quantity" DECIMAL(30,6) NOT NULL,
    "live_units" BIGINT NOT NULL DEFAULT 0,
    "credited_units" BIGINT NOT NULL DEFAULT 0,
    "invoiced_units" BIGINT NOT NULL DEFAULT 0,
    "stray_units" BIGINT NOT NULL DEFAULT 0,
    "revision" INTEGER NOT NULL DEFAULT 0,
    "stripe_invoice_id" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "billing_report_windows_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "stripe_usage_reports" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "connection_id" UUID NOT NULL,
    "kind" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "license_id" UUID,
    "meter_id" UUID,
    "window_id" UUID,
    "hour" TIMESTAMPTZ(3),
    "overage_id" UUID,
    "revision" INTEGER NOT NULL DEFAULT 0,
    "identifier" TEXT NOT NULL,
    "units" BIGINT NOT NULL DEFAULT 0,
    "amount_cents" BIGINT,
    "quantity_delta" DECIMAL(30,6) NOT NULL DEFAULT 0,
    "request" JSONB NOT NULL,
    "depends_on_id" UUID,
    "status" "stripe_report_status" NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_error" TEXT,
    "stripe_object_id" TEXT,
    "stripe_invoice_id" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "sent_at" TIMESTAMPTZ(3),

    CONSTRAINT "stripe_usage_reports_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "stripe_webhook_events" (
    "tenant_id" UUID NOT NULL,
    "event_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "outcome" TEXT NOT NULL,
    "detail" JSONB NOT NULL DEFAULT '{}',
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "stripe_webhook_events_pkey" PRIMARY KEY ("tenant_id","event_id")
);

-- CreateTable
CREATE TABLE "billing_reconciliations" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "meter_id" UUID NOT NULL,
    "day" DATE NOT NULL,
    "stripe_units" BIGINT NOT NULL,
    "ledger_units" BIGINT NOT NULL,
    "rollup_units" DECIMAL(40,12) NOT NULL,
    "difference" BIGINT NOT NULL,
    "healed" BOOLEAN NOT NULL DEFAULT false,
    "checked_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "billing_reconciliations_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "billing_connections_tenant_id_mode_key" ON "billing_connections"("tenant_id", "mode");

-- CreateIndex
CREATE UNIQUE INDEX "billing_meters_tenant_id_mode_usage_type_key" ON "billing_meters"("tenant_id", "mode", "usage_type");

-- CreateIndex
CREATE INDEX "billing_report_windows_tenant_id_hour_idx" ON "billing_report_windows"("tenant_id", "hour");

-- CreateIndex
CREATE UNIQUE INDEX "billing_report_windows_tenant_id_license_id_meter_id_hour_key" ON "billing_report_windows"("tenant_id", "license_id", "meter_id", "hour");

-- CreateIndex
CREATE INDEX "stripe_usage_reports_status_connection_id_next_attempt_at_idx" ON "stripe_usage_reports"("status", "connection_id", "next_attempt_at");

-- CreateIndex
CREATE INDEX "stripe_usage_reports_tenant_id_window_id_idx" ON "stripe_usage_reports"("tenant_id", "window_id");

-- CreateIndex
CREATE INDEX "stripe_usage_reports_tenant_id_created_at_idx" ON "stripe_usage_reports"("tenant_id", "created_at");

-- CreateIndex
CREATE UNIQUE INDEX "stripe_usage_reports_tenant_id_identifier_key" ON "stripe_usage_reports"("tenant_id", "identifier");

-- CreateIndex
CREATE INDEX "stripe_webhook_events_tenant_id_type_received_at_idx" ON "stripe_webhook_events"("tenant_id", "type", "received_at");

-- CreateIndex
CREATE INDEX "billing_reconciliations_tenant_id_day_idx" ON "billing_reconciliations"("tenant_id", "day");

-- CreateIndex
CREATE UNIQUE INDEX "billing_reconciliations_tenant_id_license_id_meter_id_day_key" ON "billing_reconciliations"("tenant_id", "license_id", "meter_id", "day");
