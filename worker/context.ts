/**
 * What the worker's parts share: the process's connections and settings, and the worker's event emitter (tests and
 * metrics listen to its events).
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { CoreDeps } from '../core/deps.ts';
import type { PurchaseMessage } from '../core/messages.ts';

export type WorkerDeps = CoreDeps;

export interface WorkerContext {
  readonly d: WorkerDeps;
  emit(event: string, ...args: unknown[]): boolean;
}

/** One purchase delivered to this worker: its message, the delivery it came in, and its retry attempt (count). */
export interface Item {
  ch: Channel;
  msg: ConsumeMessage;
  attempt: number;
  m: PurchaseMessage;
}
