-- CreateEnum
CREATE TYPE "job_run_status" AS ENUM ('active', 'completed', 'failed');

-- CreateTable
CREATE TABLE "usage_rollups_hourly" (
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "quantity" DECIMAL(30,6) NOT NULL,
    "event_count" BIGINT NOT NULL,
    "max_quantity" DECIMAL(21,6) NOT NULL,
    "distinct_users" INTEGER NOT NULL,
    "error_count" BIGINT NOT NULL,
    "duration_ms_sum" BIGINT NOT NULL,
    "computed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "usage_rollups_hourly_pkey" PRIMARY KEY ("tenant_id","license_id","usage_type","hour")
);

-- CreateTable
CREATE TABLE "usage_rollups_daily" (
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL,
    "date" DATE NOT NULL,
    "timezone" TEXT NOT NULL,
    "quantity" DECIMAL(30,6) NOT NULL,
    "event_count" BIGINT NOT NULL,
    "max_quantity" DECIMAL(21,6) NOT NULL,
    "distinct_users" INTEGER NOT NULL,
    "error_count" BIGINT NOT NULL,
    "duration_ms_sum" BIGINT NOT NULL,
    "computed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "usage_rollups_daily_pkey" PRIMARY KEY ("tenant_id","license_id","usage_type","date")
);

-- CreateTable
CREATE TABLE "rollup_dirty_hours" (
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "marked_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "rollup_dirty_hours_pkey" PRIMARY KEY ("tenant_id","license_id","hour")
);

-- CreateTable
CREATE TABLE "rollup_windows" (
    "kind" TEXT NOT NULL,
    "start" TIMESTAMPTZ(3) NOT NULL,
    "computed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "rollup_windows_pkey" PRIMARY KEY ("kind","start")
);

-- CreateTable
CREATE TABLE "job_runs" (
    "id" UUID NOT NULL,
    "job_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "window" TEXT,
    "status" "job_run_status" NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 1,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),
    "duration_ms" INTEGER,
    "rows_touched" BIGINT NOT NULL DEFAULT 0,
    "error" TEXT,
    "payload" JSONB NOT NULL DEFAULT '{}',
    "result" JSONB,

    CONSTRAINT "job_runs_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "usage_rollups_hourly_hour_idx" ON "usage_rollups_hourly"("hour");

-- CreateIndex
CREATE INDEX "usage_rollups_daily_date_idx" ON "usage_rollups_daily"("date");

-- CreateIndex
CREATE INDEX "rollup_dirty_hours_hour_idx" ON "rollup_dirty_hours"("hour");

-- CreateIndex
CREATE INDEX "job_runs_name_started_at_idx" ON "job_runs"("name", "started_at");

-- CreateIndex
CREATE INDEX "job_runs_started_at_idx" ON "job_runs"("started_at");

-- CreateIndex
CREATE UNIQUE INDEX "job_runs_job_id_key" ON "job_runs"("job_id");
