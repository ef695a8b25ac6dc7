-- CreateEnum
CREATE TYPE "forecast_method" AS ENUM ('run_rate', 'holt', 'holt_winters');

-- CreateTable
CREATE TABLE "usage_forecasts" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL,
    "period_type" "period_type" NOT NULL,
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "period_end" TIMESTAMPTZ(3) NOT NULL,
    "timezone" TEXT NOT NULL,
    "threshold_id" UUID,
    "limit_quantity" DECIMAL(21,6) NOT NULL,
    "used_so_far" DECIMAL(30,6) NOT NULL,
    "predicted_total" DECIMAL(30,6) NOT NULL,
    "lower_bound" DECIMAL(30,6) NOT NULL,
    "upper_bound" DECIMAL(30,6) NOT NULL,
    "breach_at" DATE,
    "method" "forecast_method" NOT NULL,
    "history_days" INTEGER NOT NULL,
    "as_of" TIMESTAMPTZ(3) NOT NULL,
    "generated_at" TIMESTAMPTZ(3) NOT NULL,
    "mid_predicted_total" DECIMAL(30,6),
    "mid_method" "forecast_method",
    "mid_as_of" TIMESTAMPTZ(3),
    "actual_total" DECIMAL(30,6),
    "absolute_percentage_error" DECIMAL(30,4),
    "evaluated_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "usage_forecasts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "usage_forecast_alerts" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "threshold_id" UUID,
    "usage_type" TEXT NOT NULL,
    "period_type" "period_type" NOT NULL,
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "period_end" TIMESTAMPTZ(3) NOT NULL,
    "limit_quantity" DECIMAL(21,6) NOT NULL,
    "used_so_far" DECIMAL(30,6) NOT NULL,
    "predicted_total" DECIMAL(30,6) NOT NULL,
    "breach_at" DATE NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "usage_forecast_alerts_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "usage_forecasts_tenant_id_created_at_id_idx" ON "usage_forecasts"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE INDEX "usage_forecasts_evaluated_at_period_end_idx" ON "usage_forecasts"("evaluated_at", "period_end");

-- CreateIndex
CREATE UNIQUE INDEX "usage_forecasts_tenant_id_license_id_usage_type_period_type_key" ON "usage_forecasts"("tenant_id", "license_id", "usage_type", "period_type", "period_start");

-- CreateIndex
CREATE INDEX "usage_forecast_alerts_tenant_id_created_at_id_idx" ON "usage_forecast_alerts"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE UNIQUE INDEX "usage_forecast_alerts_tenant_id_license_id_usage_type_perio_key" ON "usage_forecast_alerts"("tenant_id", "license_id", "usage_type", "period_type", "period_start");
