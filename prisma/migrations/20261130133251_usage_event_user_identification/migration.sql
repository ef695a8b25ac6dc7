-- AlterTable
-- Nullable columns without a default: added to the partitioned table and every partition as a
-- catalog change, no rewrite. Events stored before carry their email/organization (if the SDK
-- sent them) inside properties, as they were sent; they are not moved.
ALTER TABLE "usage_events" ADD COLUMN     "organization" TEXT,
ADD COLUMN     "user_email" TEXT;
