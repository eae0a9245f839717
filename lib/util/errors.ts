// One error type for everything users can get wrong: the message names the file and the problem, and
// `code` is stable for scripts (see README, "Exit codes").
export type EntropruneErrorCode =
  | 'EP_IO'
  | 'EP_FORMAT'
  | 'EP_UNSUPPORTED'
  | 'EP_INVALID_ARGUMENT'
  | 'EP_CANCELLED'
  | 'EP_TOKENIZER'
  | 'EP_ERROR';

export class EntropruneError extends Error {
  readonly code: EntropruneErrorCode;
  readonly file?: string;
  constructor(code: EntropruneErrorCode, message: string, file?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EntropruneError';
    this.code = code;
    this.file = file;
  }
}

/** Re-raise errors thrown by the native addon (which carry `code` and `file`) as EntropruneError. */
export function fromNative(e: unknown): EntropruneError {
  if (e instanceof EntropruneError) return e;
  const err = e as { code?: string; file?: string; message?: string };
  const code = (err?.code && err.code.startsWith('EP_') ? err.code : 'EP_ERROR') as EntropruneErrorCode;
  return new EntropruneError(code, err?.message ?? String(e), err?.file);
}

/** The error an abort rejects with: EP_CANCELLED, keeping `signal.reason` as its cause (and in its message). */
export function cancelledError(signal?: AbortSignal): EntropruneError {
  const reason: unknown = signal?.reason;
  const why = reason instanceof Error ? reason.message : reason !== undefined ? String(reason) : '';
  return new EntropruneError('EP_CANCELLED', why ? `cancelled: ${why}` : 'cancelled', undefined, reason !== undefined ? { cause: reason } : undefined);
}
