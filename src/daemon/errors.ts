import type { ErrorCode } from './protocol.js';

/** An error the API answers with a code and a message meant for the user. */
export class ApiError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}
