-- AlterTable
-- A nullable column without a default: PostgreSQL adds it to the partitioned table and every partition
-- (existing and future) as a catalog change, without rewriting or scanning any partition.
-- Events stored before it have no country (their addresses are not looked up afterwards).
ALTER TABLE "usage_events" ADD COLUMN     "country" CHAR(2);
