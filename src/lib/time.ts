/** Fixed lengths of time in milliseconds (UTC arithmetic; local days may have 23 or 25 hours). */
export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
