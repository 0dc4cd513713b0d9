/**
 * What the worker's parts share: the process's connections and settings, and the worker's event emitter (tests and
 * metrics listen to its events).
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { CoreDeps } from '../core/deps.ts';
import type { PurchaseMessage } from '../core/messages.ts';
import type { Sql } from './persist.ts';

export interface WorkerDeps extends CoreDeps {
  /** `pg` pool for the batch write (see persist.ts). */
  sql: Sql;
}

export interface WorkerContext {
  readonly d: WorkerDeps;
  emit(event: string, ...args: unknown[]): boolean;
}

/**
 * A delivery of the purchase queue: one message, carrying one purchase or a batch of them. It is acked once every
 * purchase in it is settled, or requeued if any of them was (the others replay idempotently).
 */
export interface Delivery {
  ch: Channel;
  msg: ConsumeMessage;
  /** Purchases in it not yet settled, count. */
  open: number;
  requeue: boolean;
}

/** One purchase delivered to this worker: the purchase, the delivery it came in, and its retry attempt (count). */
export interface Item {
  delivery: Delivery;
  /** Shorthands for `delivery.ch` and `delivery.msg`. */
  ch: Channel;
  msg: ConsumeMessage;
  attempt: number;
  m: PurchaseMessage;
  settled: boolean;
}
