-- Voided events (usage.voidEvents): kept for the record, excluded from rollups, quotas,
-- analytics and exports. Nullable columns without a default: on the partitioned table this
-- is a catalog change, applied to every monthly partition (existing and future) at once,
-- with no rewrite and no scan of the events.
-- AlterTable
ALTER TABLE "usage_events" ADD COLUMN     "void_reason" TEXT,
ADD COLUMN     "voided_at" TIMESTAMPTZ(3),
ADD COLUMN     "voided_by_key_id" UUID;
