import type { Db } from '../../lib/db';
import { PLAN_SEEDS } from './tiers';

/** Upserts the seeded plan tiers and their limits; safe to run at every start, concurrently. */
export async function ensurePlans(db: Db): Promise<void> {
  for (const seed of PLAN_SEEDS) {
    await db.$transaction(async (tx) => {
      const plan = await tx.plan.upsert({
        where: { code: seed.code },
        create: { code: seed.code, name: seed.name },
        update: { name: seed.name },
      });
      await tx.planLimit.deleteMany({
        where: {
          planId: plan.id,
          NOT: { OR: seed.limits.map((l) => ({ usageType: l.usageType, periodType: l.periodType })) },
        },
      });
      for (const limit of seed.limits) {
        await tx.planLimit.upsert({
          where: { planId_usageType_periodType: { planId: plan.id, usageType: limit.usageType, periodType: limit.periodType } },
          create: { planId: plan.id, ...limit },
          update: { limitQuantity: limit.limitQuantity },
        });
      }
    });
  }
}
