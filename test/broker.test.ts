/**
 * The publisher's channel against the real RabbitMQ: a channel that nacks is replaced, for RabbitMQ may keep
 * nacking on it (see core/amqp/broker.ts, replaceAfterNack). A classic queue of length 0 that rejects publishes
 * makes the broker nack on demand.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker, PublishError } from '../core/amqp/broker.ts';
import { topology } from '../core/amqp/topology.ts';
import { loadConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { deleteTopology } from '../scripts/local/namespace.ts';

const config = loadConfig({ ...process.env, NODE_ENV: 'test' });
const prefix = `fs.test-broker-${randomUUID().slice(0, 8)}`;
const t = topology(prefix, { retryDelaysMs: [1000], paymentWindowMs: 60_000, deliveryLimit: 5 });
const full = `${prefix}.full`;
let admin: amqp.ChannelModel;
let broker: Broker;

beforeAll(async () => {
  admin = await amqp.connect(config.AMQP_URL);
  const ch = await admin.createChannel();
  await ch.assertQueue(full, { durable: false, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
  await ch.close();
  broker = await Broker.connect({ urls: [config.AMQP_URL], topology: t, logger: createLogger('test', 'silent'), publishTimeoutMs: 5000 });
});
afterAll(async () => {
  await broker?.close();
  const ch = await admin.createChannel();
  await ch.deleteQueue(full);
  await deleteTopology(ch, t);
  await admin.close();
});

describe('publisher channel', () => {
  it('when RabbitMQ nacks a publish, then the publisher answers the failure and moves to a new channel, on which publishes are confirmed', async () => {
    let opened = 0;
    broker.on('ready', () => opened++);
    await expect(broker.sendToQueue(full, Buffer.from('x'), { messageId: randomUUID() })).rejects.toBeInstanceOf(PublishError);
    for (let i = 0; i < 300 && opened === 0; i++) await new Promise((r) => setTimeout(r, 10)); // one round trip
    expect(opened).toBe(1);
    await expect(broker.sendToQueue(t.purchaseDeadQueue, Buffer.from('{}'), { messageId: randomUUID() })).resolves.toBeUndefined();
    const ch = await admin.createChannel();
    expect((await ch.checkQueue(t.purchaseDeadQueue)).messageCount).toBe(1);
    await ch.close();
  });
});
