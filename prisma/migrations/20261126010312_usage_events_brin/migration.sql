-- CreateIndex
CREATE INDEX "usage_events_occurred_at_idx" ON "usage_events" USING BRIN ("occurred_at");
