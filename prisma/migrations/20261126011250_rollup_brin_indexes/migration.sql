-- DropIndex
DROP INDEX "usage_rollups_hourly_hour_idx";

-- DropIndex
DROP INDEX "usage_rollups_daily_date_idx";

-- CreateIndex
CREATE INDEX "usage_rollups_hourly_hour_idx" ON "usage_rollups_hourly" USING BRIN ("hour");

-- CreateIndex
CREATE INDEX "usage_rollups_daily_date_idx" ON "usage_rollups_daily" USING BRIN ("date");
