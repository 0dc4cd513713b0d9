/**
 * The pre-queue shuffle, recomputed outside Redis for an audit: the same Fisher-Yates over the join order, driven
 * by the same Park-Miller generator (Park and Miller, "Random number generators: good ones are hard to find",
 * CACM 1988, multiplier 48271) as `queue-advance-10.lua`.
 * @param joinOrder - user ids in the order they joined the pre-queue. @param seed - the recorded seed.
 * @returns the user ids in admission order.
 */
export function shufflePrequeue(joinOrder: readonly string[], seed: number): string[] {
  const out = [...joinOrder];
  const m = 2147483647;
  let x = seed % m;
  if (x <= 0) x += m - 1;
  for (let i = out.length; i >= 2; i--) {
    x = (x * 48271) % m;
    const j = (x % i) + 1;
    [out[i - 1], out[j - 1]] = [out[j - 1]!, out[i - 1]!];
  }
  return out;
}
