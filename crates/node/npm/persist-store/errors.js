// The errors persist answers: one class per kind, each a `PersistError` with a stable `code`
// (the Rust error's name: "not_found", "version_conflict", ...). The addon sends an error as
// `persist:` and JSON; `fromNative` makes the class of its kind.

/** Any error persist answers; `code` is its stable name. */
export class PersistError extends Error {
  /**
   * @param {string} message
   * @param {string} [code]
   */
  constructor(message, code = 'backend') {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The request is malformed (a bad message, an empty id, a limit out of range): nothing was written. */
export class InvalidInput extends PersistError {}
/** What the request names does not exist (for this tenant). */
export class NotFound extends PersistError {}
/** A write lost a race: a version that moved, an id taken, an idempotency key reused for other messages. */
export class Conflict extends PersistError {}
/** Another reply of the thread is being written (one at a time, across processes): `replyId` is it. */
export class ReplyRunning extends Conflict {}
/** A client stopped the reply `replyId`: it ended with what was written; stop generating. */
export class ReplyStopped extends Conflict {}
/** An append's offset is not the reply's end (`offset`): appends before it are missing, or the reply holds other parts there. */
export class OffsetConflict extends Conflict {}
/** The thread was deleted, or the feed position was trimmed. */
export class Gone extends PersistError {}
/** The store is busy or unreachable, or the call timed out: retrying may succeed. */
export class Unavailable extends PersistError {}
/** The store cannot do this (a feature it lacks). */
export class Unsupported extends PersistError {}
/** A layer or policy refused the request (one reaching across tenants, say). */
export class Rejected extends PersistError {}

const BY_CODE = {
  invalid_input: InvalidInput,
  not_found: NotFound,
  already_exists: Conflict,
  version_conflict: Conflict,
  document_conflict: Conflict,
  message_complete: Conflict,
  idempotency_key_reused: Conflict,
  reply_conflict: Conflict,
  thread_deleted: Gone,
  feed_gap: Gone,
  temporary: Unavailable,
  timeout: Unavailable,
  unsupported: Unsupported,
  rejected: Rejected,
};

const BY_REPLY_KIND = { running: ReplyRunning, stopped: ReplyStopped, offset: OffsetConflict };

const PREFIX = 'persist:';

/**
 * An error of the addon as persist's class of its kind (any other error as it is).
 * @param {unknown} error
 * @returns {unknown}
 */
export function fromNative(error) {
  const message = error instanceof Error ? error.message : '';
  if (!message.startsWith(PREFIX)) return error;
  let described;
  try {
    described = JSON.parse(message.slice(PREFIX.length));
  } catch {
    return error;
  }
  const Class = BY_REPLY_KIND[described.kind] ?? BY_CODE[described.code] ?? PersistError;
  const made = new Class(described.message, described.code);
  if (described.replyId !== undefined) {
    made.replyId = described.replyId;
    made.offset = described.offset ?? null;
  }
  return made;
}
