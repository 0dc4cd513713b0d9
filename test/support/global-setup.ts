/**
 * Runs once before the suite: applies the migrations to the test database (`flash_sale_test` unless
 * TEST_DATABASE_URL says otherwise).
 */
import { migrate } from '../../prisma/migrate.ts';
import { TEST_DATABASE_URL } from './system.ts';

export default async function setup(): Promise<void> {
  await migrate(TEST_DATABASE_URL);
}
