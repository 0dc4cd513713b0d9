-- CreateEnum
CREATE TYPE "order_status" AS ENUM ('pending_payment', 'paid', 'expired');

-- CreateEnum
CREATE TYPE "purchase_status" AS ENUM ('succeeded', 'sold_out', 'rejected', 'failed');

-- CreateTable
CREATE TABLE "sales" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "stock" INTEGER NOT NULL,
    "sold" INTEGER NOT NULL DEFAULT 0,
    "per_user_limit" INTEGER NOT NULL,
    "starts_at" TIMESTAMPTZ(3) NOT NULL,
    "ends_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "sales_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "orders" (
    "id" UUID NOT NULL,
    "request_id" UUID NOT NULL,
    "sale_id" UUID NOT NULL,
    "user_id" TEXT NOT NULL,
    "quantity" INTEGER NOT NULL,
    "status" "order_status" NOT NULL DEFAULT 'pending_payment',
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "paid_at" TIMESTAMPTZ(3),
    "expired_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "orders_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "purchases" (
    "request_id" UUID NOT NULL,
    "sale_id" UUID NOT NULL,
    "user_id" TEXT NOT NULL,
    "quantity" INTEGER NOT NULL,
    "status" "purchase_status" NOT NULL,
    "reason" TEXT,
    "order_id" UUID,
    "decided_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "purchases_pkey" PRIMARY KEY ("request_id")
);

-- CreateTable
CREATE TABLE "sale_buyers" (
    "sale_id" UUID NOT NULL,
    "user_id" TEXT NOT NULL,
    "units" INTEGER NOT NULL,
    "max_units" INTEGER NOT NULL,

    CONSTRAINT "sale_buyers_pkey" PRIMARY KEY ("sale_id","user_id")
);

-- CreateIndex
CREATE UNIQUE INDEX "orders_request_id_key" ON "orders"("request_id");

-- CreateIndex
CREATE INDEX "orders_sale_id_status_idx" ON "orders"("sale_id", "status");

-- CreateIndex
CREATE INDEX "purchases_sale_id_user_id_idx" ON "purchases"("sale_id", "user_id");

-- AddForeignKey
ALTER TABLE "orders" ADD CONSTRAINT "orders_sale_id_fkey" FOREIGN KEY ("sale_id") REFERENCES "sales"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "purchases" ADD CONSTRAINT "purchases_sale_id_fkey" FOREIGN KEY ("sale_id") REFERENCES "sales"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "sale_buyers" ADD CONSTRAINT "sale_buyers_sale_id_fkey" FOREIGN KEY ("sale_id") REFERENCES "sales"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Guards the schema cannot express: PostgreSQL itself refuses an oversell or a purchase beyond the per-user limit,
-- whatever state Redis is in (see README, "When Redis loses its state").
ALTER TABLE "sales" ADD CONSTRAINT "sales_stock_check" CHECK ("stock" >= 0 AND "sold" BETWEEN 0 AND "stock");
ALTER TABLE "sales" ADD CONSTRAINT "sales_per_user_limit_check" CHECK ("per_user_limit" >= 1);
ALTER TABLE "sale_buyers" ADD CONSTRAINT "sale_buyers_units_check" CHECK ("units" BETWEEN 0 AND "max_units");
ALTER TABLE "orders" ADD CONSTRAINT "orders_quantity_check" CHECK ("quantity" >= 1);
