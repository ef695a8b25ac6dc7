-- CreateEnum
CREATE TYPE "overage_status" AS ENUM ('DETECTED', 'APPROVED', 'WAIVED', 'BILLED');

-- CreateEnum
CREATE TYPE "webhook_delivery_status" AS ENUM ('PENDING', 'SUCCEEDED', 'FAILED');

-- CreateTable
CREATE TABLE "usage_thresholds" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL,
    "period_type" "period_type" NOT NULL,
    "limit_quantity" DECIMAL(21,6) NOT NULL,
    "grace_percentage" DECIMAL(7,2) NOT NULL DEFAULT 0,
    "allow_overage" BOOLEAN NOT NULL DEFAULT false,
    "overage_rate_cents" INTEGER NOT NULL DEFAULT 0,
    "warning_levels" INTEGER[] DEFAULT ARRAY[50, 80, 95]::INTEGER[],
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "usage_thresholds_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "usage_alerts" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "threshold_id" UUID,
    "usage_type" TEXT NOT NULL,
    "period_type" "period_type" NOT NULL,
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "period_end" TIMESTAMPTZ(3) NOT NULL,
    "level" INTEGER NOT NULL,
    "limit_quantity" DECIMAL(21,6) NOT NULL,
    "used_quantity" DECIMAL(30,6) NOT NULL,
    "detected_by" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "usage_alerts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "usage_overages" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "threshold_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL,
    "period_type" "period_type" NOT NULL,
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "period_end" TIMESTAMPTZ(3) NOT NULL,
    "quantity" DECIMAL(30,6) NOT NULL,
    "rate_cents" INTEGER NOT NULL,
    "fee_cents" BIGINT NOT NULL,
    "status" "overage_status" NOT NULL DEFAULT 'DETECTED',
    "final" BOOLEAN NOT NULL DEFAULT false,
    "decided_at" TIMESTAMPTZ(3),
    "decided_by_key_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "usage_overages_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_endpoints" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "url" TEXT NOT NULL,
    "description" TEXT,
    "events" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "secret" TEXT NOT NULL,
    "previous_secret" TEXT,
    "previous_secret_expires_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "webhook_endpoints_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_deliveries" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "endpoint_id" UUID NOT NULL,
    "event_id" UUID NOT NULL,
    "event_type" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "status" "webhook_delivery_status" NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "response_status" INTEGER,
    "attempt_log" JSONB NOT NULL DEFAULT '[]',
    "last_error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "delivered_at" TIMESTAMPTZ(3),

    CONSTRAINT "webhook_deliveries_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "usage_thresholds_tenant_id_created_at_id_idx" ON "usage_thresholds"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE UNIQUE INDEX "usage_thresholds_tenant_id_license_id_usage_type_period_typ_key" ON "usage_thresholds"("tenant_id", "license_id", "usage_type", "period_type");

-- CreateIndex
CREATE INDEX "usage_alerts_tenant_id_created_at_id_idx" ON "usage_alerts"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE UNIQUE INDEX "usage_alerts_tenant_id_license_id_usage_type_period_type_pe_key" ON "usage_alerts"("tenant_id", "license_id", "usage_type", "period_type", "period_start", "level");

-- CreateIndex
CREATE INDEX "usage_overages_tenant_id_created_at_id_idx" ON "usage_overages"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE UNIQUE INDEX "usage_overages_tenant_id_threshold_id_period_start_key" ON "usage_overages"("tenant_id", "threshold_id", "period_start");

-- CreateIndex
CREATE INDEX "webhook_endpoints_tenant_id_created_at_id_idx" ON "webhook_endpoints"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE INDEX "webhook_deliveries_tenant_id_created_at_id_idx" ON "webhook_deliveries"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE INDEX "webhook_deliveries_endpoint_id_created_at_idx" ON "webhook_deliveries"("endpoint_id", "created_at");

-- CreateIndex
CREATE UNIQUE INDEX "webhook_deliveries_tenant_id_endpoint_id_event_id_key" ON "webhook_deliveries"("tenant_id", "endpoint_id", "event_id");

-- AddForeignKey
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_endpoint_id_fkey" FOREIGN KEY ("endpoint_id") REFERENCES "webhook_endpoints"("id") ON DELETE CASCADE ON UPDATE CASCADE;
