-- CreateTable
CREATE TABLE "daily_user_sets" (
    "tenant_id" UUID NOT NULL,
    "license_id" UUID NOT NULL,
    "usage_type" TEXT NOT NULL,
    "date" DATE NOT NULL,
    "timezone" TEXT NOT NULL,
    "users" VARBIT NOT NULL,
    "computed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "daily_user_sets_pkey" PRIMARY KEY ("tenant_id","license_id","usage_type","date")
);

-- CreateTable
CREATE TABLE "usage_user_numbers" (
    "tenant_id" UUID NOT NULL,
    "user_no" INTEGER NOT NULL,
    "user_id" TEXT NOT NULL,

    CONSTRAINT "usage_user_numbers_pkey" PRIMARY KEY ("tenant_id","user_no")
);

-- CreateIndex
CREATE UNIQUE INDEX "usage_user_numbers_tenant_id_user_id_key" ON "usage_user_numbers"("tenant_id", "user_id");

-- A bitmap of user numbers: bit n (counted from the left, as get_bit does) is set for every n
-- in the array. Its length is the next multiple of 8 past the largest number; readers pad
-- shorter bitmaps with zeros before OR-ing them. NULL for an empty array.
CREATE FUNCTION tally_user_bitmap(numbers int[]) RETURNS varbit
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ('x' || string_agg(lpad(to_hex(coalesce(b.byte, 0)), 2, '0'), '' ORDER BY i.i))::varbit
    FROM generate_series(0, (SELECT max(n) FROM unnest(numbers) AS n) / 8) AS i(i)
    LEFT JOIN (SELECT n / 8 AS i, bit_or(1 << (7 - n % 8)) AS byte FROM unnest(numbers) AS n GROUP BY 1) b ON b.i = i.i
$$;

-- The bitmap with the bit of `from_no` moved to `to_no` (an erased user's number to its pseudonym's).
CREATE FUNCTION tally_user_bitmap_move(users varbit, from_no int, to_no int) RETURNS varbit
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT set_bit(set_bit(CASE WHEN length(users) > to_no THEN users
                              ELSE users || repeat('0', (to_no / 8 + 1) * 8 - length(users))::varbit END,
                         from_no, 0), to_no, 1)
$$;

-- Backfill: number every user id the raw events hold, and build the sets of every day that
-- already has daily rollups and whose raw events are all still there (a day retention has cut
-- into, or removed, gets none: distinct users of such days were unanswerable before too).
INSERT INTO "usage_user_numbers" ("tenant_id", "user_no", "user_id")
SELECT tenant_id, (row_number() OVER (PARTITION BY tenant_id ORDER BY user_id) - 1)::int, user_id
  FROM (SELECT DISTINCT tenant_id, user_id FROM "usage_events" WHERE user_id IS NOT NULL) u;

INSERT INTO "daily_user_sets" ("tenant_id", "license_id", "usage_type", "date", "timezone", "users")
SELECT r.tenant_id, r.license_id, r.usage_type, r.date, r.timezone, tally_user_bitmap(array_agg(DISTINCT n.user_no))
  FROM "usage_rollups_daily" r
  JOIN "usage_events" e ON e.tenant_id = r.tenant_id AND e.license_id = r.license_id AND e.usage_type = r.usage_type
   AND e.occurred_at >= r.date::timestamp AT TIME ZONE r.timezone AND e.occurred_at < (r.date + 1)::timestamp AT TIME ZONE r.timezone
   AND e.voided_at IS NULL AND e.user_id IS NOT NULL
  JOIN "usage_user_numbers" n ON n.tenant_id = e.tenant_id AND n.user_id = e.user_id
 WHERE r.date::timestamp AT TIME ZONE r.timezone >= (SELECT min(occurred_at) FROM "usage_events")
 GROUP BY r.tenant_id, r.license_id, r.usage_type, r.date, r.timezone;
