/**
 * Queue message schemas. A message that fails its schema is a poison message: it goes straight to the dead-letter
 * queue, never retried.
 */
import { z } from 'zod';
import { uuidSchema } from './ids.ts';

/** User ids come from a token's `sub`; they are part of Redis keys, so they are short and printable. */
export const userIdSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

/** A purchase admitted by the API, on its way to the worker. `epoch` is the sale's Redis epoch at admission. */
export const purchaseMessageSchema = z.object({
  v: z.literal(1),
  requestId: uuidSchema,
  saleId: uuidSchema,
  userId: userIdSchema,
  quantity: z.int().min(1).max(10_000),
  epoch: z.string().min(1).max(64),
  /** Admission time, ms since the epoch. */
  admittedAt: z.int().nonnegative(),
});
export type PurchaseMessage = z.infer<typeof purchaseMessageSchema>;

/** Most purchases one batch message carries, count. */
export const PURCHASE_BATCH_MAX = 1000;

/**
 * What a purchase delivery carries: one purchase (v1: the API under light load, the sweeper, retry tiers and
 * dead-letter queues), or the purchases one API process admitted in one event-loop turn (v2, see
 * api/purchase-publisher.ts), each keeping its own requestId. Read as a list either way.
 */
export const purchaseDeliverySchema = z
  .discriminatedUnion('v', [purchaseMessageSchema, z.object({ v: z.literal(2), purchases: z.array(purchaseMessageSchema).min(1).max(PURCHASE_BATCH_MAX) })])
  .transform((m) => (m.v === 2 ? m.purchases : [m]));
export type PurchaseBatchMessage = { v: 2; purchases: PurchaseMessage[] };

/** A reservation to expire when its payment window closes, unless it was paid. */
export const reservationSchema = z.object({
  orderId: uuidSchema,
  requestId: uuidSchema,
  saleId: uuidSchema,
  userId: userIdSchema,
  quantity: z.int().min(1),
});
export type Reservation = z.infer<typeof reservationSchema>;

/**
 * The reservations one worker batch created (v2): they share one payment deadline, so one delayed message serves
 * all. v1 carried one reservation; messages of that shape may still wait in the delayed queue after an upgrade, so
 * they are read as a list of one.
 */
export const reservationMessageSchema = z
  .discriminatedUnion('v', [
    z.object({ v: z.literal(2), reservations: z.array(reservationSchema).min(1).max(100_000) }),
    reservationSchema.extend({ v: z.literal(1) }),
  ])
  .transform((m) => (m.v === 2 ? m : { v: 2 as const, reservations: [reservationSchema.parse(m)] }));
export type ReservationMessage = z.output<typeof reservationMessageSchema>;

/** AMQP header carrying how many times a purchase was retried after a transient failure, count. */
export const ATTEMPT_HEADER = 'x-attempt';
/** AMQP header carrying why a message was dead-lettered by the worker. */
export const REASON_HEADER = 'x-failure-reason';
/**
 * AMQP header marking a purchase the worker failed for good (the shopper was told `failed` and its units went back
 * to stock). It stays on the message through a dead-letter replay, which then only records the failure.
 */
export const FINAL_STATUS_HEADER = 'x-final-status';
