// Awaiting a cancellable native job: an AbortSignal cancels the native work (checked between layers),
// and native errors become EntropruneError.
import type { NativeJob } from '../native';
import { fromNative } from './errors';

export async function awaitNativeJob<T>(job: NativeJob<T>, signal?: AbortSignal): Promise<T> {
  const onAbort = () => job.cancel();
  signal?.addEventListener('abort', onAbort);
  if (signal?.aborted) job.cancel();
  try {
    return await job.promise;
  } catch (e) {
    throw fromNative(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
