-- DropIndex
DROP INDEX "licenses_tenant_id_external_id_key";

-- AlterTable
ALTER TABLE "licenses" ADD COLUMN     "environment" "api_key_environment" NOT NULL DEFAULT 'live';

-- AlterTable
ALTER TABLE "webhook_endpoints" ADD COLUMN     "environment" "api_key_environment" NOT NULL DEFAULT 'live';

-- CreateIndex
CREATE INDEX "licenses_tenant_id_environment_created_at_id_idx" ON "licenses"("tenant_id", "environment", "created_at", "id");

-- CreateIndex
CREATE UNIQUE INDEX "licenses_tenant_id_environment_external_id_key" ON "licenses"("tenant_id", "environment", "external_id");
