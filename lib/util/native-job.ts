// Awaiting a cancellable native job: an AbortSignal cancels the native work (checked between layers),
// and native errors become EntropruneError.
import type { NativeJob } from '../native';
import { cancelledError, fromNative } from './errors';

export async function awaitNativeJob<T>(job: NativeJob<T>, signal?: AbortSignal): Promise<T> {
  const onAbort = () => job.cancel();
  signal?.addEventListener('abort', onAbort);
  if (signal?.aborted) job.cancel();
  try {
    return await job.promise;
  } catch (e) {
    const err = fromNative(e);
    // the native side only knows it was cancelled; the caller's reason comes from the signal
    throw err.code === 'EP_CANCELLED' && signal?.aborted ? cancelledError(signal) : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
