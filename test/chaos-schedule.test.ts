// The chaos run's schedule is pure (no services): its promises are that a printed seed repeats it and that a
// combined fault is two kills close together.
import { describe, expect, it } from 'vitest';
import { FAULT_KINDS } from '../chaos/options.ts';
import { seeded } from '../chaos/random.ts';
import { buildSchedule } from '../chaos/schedule.ts';

describe('chaos schedule', () => {
  it('when the seed is the same, then the schedule is the same', () => {
    const a = buildSchedule(seeded(42), FAULT_KINDS, 60_000);
    const b = buildSchedule(seeded(42), FAULT_KINDS, 60_000);
    const c = buildSchedule(seeded(43), FAULT_KINDS, 60_000);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it('when every kind is asked for, then each is killed inside the load and a combined fault is two kills within 3 s', () => {
    for (let seed = 0; seed < 50; seed++) {
      const kills = buildSchedule(seeded(seed), FAULT_KINDS, 60_000);
      expect(kills.every((k) => k.atMs > 0 && k.atMs < 60_000 && k.restartDelayMs >= 500)).toBe(true);
      expect(new Set(kills.map((k) => k.fault))).toEqual(new Set(FAULT_KINDS));
      const combined = kills.filter((k) => k.fault === 'combined');
      expect(combined).toHaveLength(2);
      expect(combined[1]!.atMs - combined[0]!.atMs).toBeLessThanOrEqual(3000);
      expect(combined[0]!.target).not.toBe(combined[1]!.target);
    }
  });
});
