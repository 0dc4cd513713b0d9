-- Proof of work at a waiting room's door (ALTCHA v1, see api/queue-door.ts): the largest secret number a challenge
-- may hide, so a shopper's browser tries maxNumber / 2 SHA-256 hashes on average before it may join. NULL: no proof
-- of work. A column of its own rather than the placeholder "pow_difficulty" the waiting room was created with, which
-- no build ever wrote: builds before this one still select that column, so it stays until none runs.
ALTER TABLE "waiting_rooms" ADD COLUMN "pow_max_number" INTEGER;
ALTER TABLE "waiting_rooms" ADD CONSTRAINT "waiting_rooms_pow_max_number_check" CHECK ("pow_max_number" BETWEEN 1 AND 10000000);
