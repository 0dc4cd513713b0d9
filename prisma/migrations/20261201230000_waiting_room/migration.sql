-- A sale's optional waiting room: its settings and the seed of its pre-queue shuffle (recorded so an operator can
-- audit the order). A sale without a row behaves as before.
CREATE TYPE "queue_order" AS ENUM ('fifo', 'random');

CREATE TABLE "waiting_rooms" (
    "sale_id" UUID NOT NULL,
    "opens_at" TIMESTAMPTZ(3) NOT NULL,
    "admissions_per_minute" INTEGER NOT NULL,
    "max_inside" INTEGER NOT NULL,
    "session_seconds" INTEGER NOT NULL,
    "order" "queue_order" NOT NULL DEFAULT 'fifo',
    "shuffle_seed" INTEGER NOT NULL,
    "pow_difficulty" INTEGER,
    CONSTRAINT "waiting_rooms_pkey" PRIMARY KEY ("sale_id")
);

ALTER TABLE "waiting_rooms" ADD CONSTRAINT "waiting_rooms_sale_id_fkey" FOREIGN KEY ("sale_id") REFERENCES "sales"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
