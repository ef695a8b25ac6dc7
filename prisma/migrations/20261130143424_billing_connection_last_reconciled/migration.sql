-- AlterTable
ALTER TABLE "billing_connections" ADD COLUMN     "last_reconciled_at" TIMESTAMPTZ(3);
