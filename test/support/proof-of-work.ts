/**
 * Solving the waiting room's door challenges in tests, with altcha-lib's own v1 solver (what a client library
 * would use), and minting challenges the way the API does, for cases only the key's holder can make (expired ones).
 */
import { createChallenge, solveChallenge } from 'altcha-lib/v1';
import type { Challenge } from 'altcha-lib/v1/types';
import { doorKey } from '../../api/queue-door.ts';

/** Solves `c`. @returns the `altcha` member of a join: base64 of the payload ALTCHA's widget would submit. */
export async function solve(c: Challenge): Promise<string> {
  const found = await solveChallenge(c.challenge, c.salt, c.algorithm, c.maxnumber).promise;
  if (!found) throw new Error(`no solution up to ${c.maxnumber}`);
  const payload = { algorithm: c.algorithm, challenge: c.challenge, number: found.number, salt: c.salt, signature: c.signature };
  return Buffer.from(JSON.stringify(payload)).toString('base64');
}

/** A challenge signed with the API's key (from its JWT_SECRET), with the params and expiry given. */
export function mintChallenge(jwtSecret: string, o: { maxNumber: number; expires: Date; params: Record<string, string> }): Promise<Challenge> {
  return createChallenge({ hmacKey: doorKey(jwtSecret), ...o });
}
