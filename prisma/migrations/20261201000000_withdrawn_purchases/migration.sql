-- A purchase request the API withdrew before answering 503 (its publish failed, or its outcome was unknown) is
-- recorded durably, so that a copy of its message that reached the queue after all can never become an order,
-- even after Redis has lost its state. The row's primary key arbitrates between the withdrawal and the worker's
-- decision: whichever is written first wins.
ALTER TYPE "purchase_status" ADD VALUE 'withdrawn';
