/**
 * How much of a sync runs in one transaction before the host gets a turn (rendering, input).
 * A slice costs a few milliseconds, so no batch or page holds the event loop for a frame.
 */

/**
 * Answers are applied in slices of at most this many outcomes or changes, one transaction each,
 * with a turn for the host between slices. A crash between slices is safe: an unapplied outcome's
 * item is still sent (the retry is answered from the server's record), and the pull cursor moves
 * only with a page's last slice (re-applying a change is a no-op).
 */
export const APPLY_SLICE = 100

/**
 * A push batch is picked and frozen in slices of at most this many items, one transaction each,
 * with a turn for the host between them: freezing 1000 items in one transaction (and committing
 * them) held the event loop for ~18 ms.
 */
export const FREEZE_SLICE = 100
