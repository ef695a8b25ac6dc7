import { SCHEDULE, lastFiring } from '../../src/domain/jobs/schedule';

const at = (iso: string) => new Date(iso);

describe('lastFiring', () => {
  it('finds the last firing at or before an instant, to the minute', () => {
    expect(lastFiring('0 3 * * *', at('2026-11-23T03:00:00Z'))).toEqual(at('2026-11-23T03:00:00Z'));
    expect(lastFiring('0 3 * * *', at('2026-11-23T02:59:59Z'))).toEqual(at('2026-11-22T03:00:00Z'));
    expect(lastFiring('30 * * * *', at('2026-11-23T10:29:00Z'))).toEqual(at('2026-11-23T09:30:00Z'));
    expect(lastFiring('30 * * * *', at('2026-11-23T10:30:30Z'))).toEqual(at('2026-11-23T10:30:00Z'));
    // Sunday 04:00: from a Wednesday back to the Sunday before, and the Sunday before that at 03:59
    expect(lastFiring('0 4 * * 0', at('2026-11-25T12:00:00Z'))).toEqual(at('2026-11-22T04:00:00Z'));
    expect(lastFiring('0 4 * * 0', at('2026-11-22T03:59:00Z'))).toEqual(at('2026-11-15T04:00:00Z'));
  });

  it('understands every expression of the schedule, and refuses what it cannot read', () => {
    const now = at('2026-11-26T07:45:00Z');
    for (const entry of SCHEDULE) {
      const fired = lastFiring(entry.cron, now);
      expect(fired.getTime()).toBeLessThanOrEqual(now.getTime());
      expect(now.getTime() - fired.getTime()).toBeLessThan(7 * 86_400_000 + 60_000);
    }
    expect(() => lastFiring('*/5 * * * *', now)).toThrow('unsupported cron expression');
    expect(() => lastFiring('0 3 * *', now)).toThrow('unsupported cron expression');
    expect(() => lastFiring('0 3 31 2 *', now)).toThrow('does not fire within 8 days');
  });
});
