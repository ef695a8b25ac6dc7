-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "api_key_role" AS ENUM ('admin', 'owner', 'member', 'ingest', 'read');

-- CreateEnum
CREATE TYPE "api_key_environment" AS ENUM ('live', 'test');

-- CreateEnum
CREATE TYPE "license_status" AS ENUM ('ACTIVE', 'SUSPENDED', 'EXPIRED', 'REVOKED');

-- CreateEnum
CREATE TYPE "period_type" AS ENUM ('daily', 'weekly', 'monthly');

-- CreateTable
CREATE TABLE "tenants" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "slug" TEXT NOT NULL,
    "timezone" TEXT NOT NULL DEFAULT 'UTC',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "tenants_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" UUID NOT NULL,
    "tenant_id" UUID,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "key_hash" TEXT NOT NULL,
    "role" "api_key_role" NOT NULL,
    "environment" "api_key_environment" NOT NULL,
    "user_email" TEXT,
    "organization" TEXT,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "sdk_version" TEXT,
    "rate_limit_per_hour" INTEGER,
    "request_count" BIGINT NOT NULL DEFAULT 0,
    "last_used_at" TIMESTAMPTZ(3),
    "created_by_key_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "plans" (
    "id" UUID NOT NULL,
    "code" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "plans_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "plan_limits" (
    "id" UUID NOT NULL,
    "plan_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL DEFAULT '*',
    "period_type" "period_type" NOT NULL,
    "limit_quantity" DECIMAL(21,6) NOT NULL,

    CONSTRAINT "plan_limits_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "licenses" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "external_id" TEXT,
    "name" TEXT NOT NULL,
    "status" "license_status" NOT NULL DEFAULT 'ACTIVE',
    "usage_tracking_enabled" BOOLEAN NOT NULL DEFAULT true,
    "plan_id" UUID NOT NULL,
    "timezone" TEXT NOT NULL DEFAULT 'UTC',
    "billing_anchor" TIMESTAMPTZ(3) NOT NULL,
    "stripe_customer_id" TEXT,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),

    CONSTRAINT "licenses_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "usage_events" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL,
    "quantity" DECIMAL(21,6) NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "idempotency_key" TEXT,
    "payload_hash" TEXT NOT NULL,
    "platform" TEXT,
    "device_type" TEXT,
    "user_id" TEXT,
    "route" TEXT,
    "method" TEXT,
    "status_code" INTEGER,
    "duration_ms" INTEGER,
    "sdk_version" TEXT,
    "ip_address" TEXT,
    "properties" JSONB NOT NULL DEFAULT '{}',

    CONSTRAINT "usage_events_pkey" PRIMARY KEY ("tenant_id","id","occurred_at")
) PARTITION BY RANGE ("occurred_at");

-- CreateTable
CREATE TABLE "idempotency_keys" (
    "tenant_id" UUID NOT NULL,
    "key" TEXT NOT NULL,
    "event_id" UUID NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "payload_hash" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "idempotency_keys_pkey" PRIMARY KEY ("tenant_id","key")
);

-- CreateTable
CREATE TABLE "audit_logs" (
    "id" UUID NOT NULL,
    "tenant_id" UUID,
    "actor_key_id" UUID,
    "actor_prefix" TEXT,
    "action" TEXT NOT NULL,
    "target_type" TEXT,
    "target_id" TEXT,
    "outcome" TEXT NOT NULL DEFAULT 'success',
    "ip" TEXT,
    "user_agent" TEXT,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "audit_logs_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "tenants_slug_key" ON "tenants"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_key_hash_key" ON "api_keys"("key_hash");

-- CreateIndex
CREATE INDEX "api_keys_tenant_id_created_at_idx" ON "api_keys"("tenant_id", "created_at");

-- CreateIndex
CREATE UNIQUE INDEX "plans_code_key" ON "plans"("code");

-- CreateIndex
CREATE UNIQUE INDEX "plan_limits_plan_id_usage_type_period_type_key" ON "plan_limits"("plan_id", "usage_type", "period_type");

-- CreateIndex
CREATE INDEX "licenses_tenant_id_status_created_at_id_idx" ON "licenses"("tenant_id", "status", "created_at", "id");

-- CreateIndex
CREATE UNIQUE INDEX "licenses_tenant_id_external_id_key" ON "licenses"("tenant_id", "external_id");

-- CreateIndex
CREATE INDEX "usage_events_tenant_id_license_id_occurred_at_idx" ON "usage_events"("tenant_id", "license_id", "occurred_at");

-- CreateIndex
CREATE INDEX "idempotency_keys_created_at_idx" ON "idempotency_keys"("created_at");

-- CreateIndex
CREATE INDEX "audit_logs_tenant_id_created_at_id_idx" ON "audit_logs"("tenant_id", "created_at", "id");

-- CreateIndex
CREATE INDEX "audit_logs_created_at_idx" ON "audit_logs"("created_at");

-- AddForeignKey
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "plan_limits" ADD CONSTRAINT "plan_limits_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plans"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "licenses" ADD CONSTRAINT "licenses_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "licenses" ADD CONSTRAINT "licenses_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plans"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Hand-written: quantities are never negative.
ALTER TABLE "usage_events" ADD CONSTRAINT "usage_events_quantity_check" CHECK ("quantity" >= 0);

-- Hand-written: monthly partitions of usage_events (UTC months). Retention drops whole
-- partitions; this function creates the ones needed ahead of time, serialised by an
-- advisory lock so concurrent starts cannot race on CREATE TABLE.
CREATE FUNCTION tally_ensure_usage_event_partitions(first_month date, month_count integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  month_start date;
  created integer := 0;
  partition_name text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('tally_usage_event_partitions'));
  FOR i IN 0 .. month_count - 1 LOOP
    month_start := (date_trunc('month', first_month) + make_interval(months => i))::date;
    partition_name := format('usage_events_%s', to_char(month_start, 'YYYY_MM'));
    IF to_regclass(format('public.%I', partition_name)) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
        partition_name,
        month_start::timestamp AT TIME ZONE 'UTC',
        (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC');
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END $$;
