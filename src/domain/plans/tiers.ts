/**
 * The plan tiers Tally ships with. A plan's limits are default hard limits for every usage
 * type ("*") of a license on that plan; a plan without limits is unlimited. Ensured at every
 * start (upsert), so editing this file and restarting updates them.
 */
export interface PlanSeed {
  code: string;
  name: string;
  limits: { usageType: string; periodType: 'daily' | 'weekly' | 'monthly'; limitQuantity: string }[];
}

export const PLAN_SEEDS: readonly PlanSeed[] = [
  {
    code: 'trial',
    name: 'Trial',
    limits: [
      { usageType: '*', periodType: 'daily', limitQuantity: '100' },
      { usageType: '*', periodType: 'weekly', limitQuantity: '700' },
    ],
  },
  {
    code: 'starter',
    name: 'Starter',
    limits: [
      { usageType: '*', periodType: 'daily', limitQuantity: '34' },
      { usageType: '*', periodType: 'monthly', limitQuantity: '1000' },
    ],
  },
  {
    code: 'professional',
    name: 'Professional',
    limits: [
      { usageType: '*', periodType: 'daily', limitQuantity: '334' },
      { usageType: '*', periodType: 'monthly', limitQuantity: '10000' },
    ],
  },
  { code: 'enterprise', name: 'Enterprise', limits: [] },
  { code: 'vip_founder', name: 'VIP founder', limits: [] },
  { code: 'byok', name: 'Bring your own key', limits: [] },
];

export const PLAN_CODES = PLAN_SEEDS.map((p) => p.code) as [string, ...string[]];
