-- The epoch fence replaces the per-batch counters: a sale's `epoch` is bumped (under the row's exclusive lock) each
-- time Redis is rebuilt from PostgreSQL, and a batch of decisions commits only while holding the row in share mode
-- with the epoch it was decided under. Writers no longer serialize on one hot row, and no decision taken in a Redis
-- that has since been rebuilt can reach PostgreSQL.

-- AlterTable
ALTER TABLE "sales" DROP CONSTRAINT "sales_stock_check";
ALTER TABLE "sales" DROP COLUMN "sold";
ALTER TABLE "sales" ADD COLUMN "epoch" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "sales" ADD CONSTRAINT "sales_stock_check" CHECK ("stock" >= 0);

-- DropTable
DROP TABLE "sale_buyers";
