// Package redislocker is a tusd Locker whose locks are shared through Redis,
// so that several tusgate instances behind a load balancer without sticky
// sessions never work on the same upload at the same time.
//
// # Locks
//
// A lock is the key <Prefix><upload ID> holding a random token of the Lock
// object that took it. It is taken with SET key token NX PX LeaseTTL, renewed
// every Renew by a Lua compare-and-PEXPIRE, and freed by a Lua
// compare-and-delete, so an instance never extends or frees a lock it no
// longer owns.
//
// # Release requests
//
// tusd's contract (handler.Lock) is that a caller who wants a held lock makes
// the holder's requestUnlock run; tusd then stops reading the holder's
// request body, saves what it received and unlocks. Across instances this
// goes through Redis pub/sub:
//
//   - A Lock that finds the key held publishes on <Prefix><id>:release. It
//     publishes again right after every failed attempt that followed a
//     "released" notification (the lock changed hands in between: the new
//     holder is asked too, as tusd's memorylocker does) and otherwise every
//     2 s, in case the request was lost (pub/sub delivers at most once).
//   - The holder's instance calls the holder's requestUnlock (once per
//     holding; repeated requests are not forwarded).
//   - Unlock's compare-and-delete script publishes on <Prefix><id>:released
//     when it deleted the key. Waiters retry their SET NX on that message and,
//     as a safety net for holders that die without unlocking, every 500 ms.
//   - A waiter gives up with handler.ErrLockTimeout when its context ends
//     (tusd's AcquireLockTimeout, 20 s by default).
//
// Each Locker has exactly one subscription: one PSUBSCRIBE of <Prefix>* on
// one dedicated connection (started by the first Lock), whatever the number
// of locks held or awaited; messages are dispatched in memory to the Lock
// objects concerned. The subscription is pinged after 1 s of silence and
// replaced on a new connection (back-off 50 ms doubling up to 1 s) when
// reading fails, a ping goes unanswered for 1 s, or Redis does not confirm
// it within 2 s. A Lock returns only once the subscription is confirmed, so
// a release request published after Lock returned reaches the holder unless
// the subscription breaks later (the waiter's repeats then cover it). Every
// instance sees every release message, and every waiter of an upload
// publishes on its own: one message per waiter per hand-over, a handful per
// contended tus request.
//
// # Leases and their margin
//
// S3 has no fencing tokens: an instance that lost its lock but keeps writing
// parts can corrupt an upload. The only protection is timing. Let the last
// successful renewal start at t. The lease then expires in Redis no earlier
// than t+LeaseTTL, when another instance may take the lock. The holder
// attempts the next renewal at t+Renew, and that attempt fails after at most
// the renewal timeout R (1 s, or Renew if smaller; enforced by a local timer
// even if the Redis client ignores context deadlines), so it learns of the
// failure by t+Renew+R and at once calls requestUnlock. From then tusd may
// still write for its graceful completion time G (GracefulRequestCompletionTimeout,
// at most 10 s in tusgate) plus one part upload P already in flight. Safety
// therefore needs
//
//	LeaseTTL > Renew + R + G + P
//
// With the defaults, 30 s > 5 s + 1 s + 10 s + P holds for P < 14 s: a
// 50 MiB part at 4 MB/s or faster. Raise LeaseTTL for slower links to S3
// or larger parts; a longer lease only delays the takeover of uploads whose
// holder died without unlocking (a killed process), which then waits up to
// LeaseTTL.
//
// When a renewal fails, because Redis did not answer in time or the key no
// longer holds our token, the lease is counted as lost
// (tusgate_lock_lease_lost_total), a warning is logged and requestUnlock is
// called; renewals of that holding stop.
//
// # Redis down
//
// Lock gives each Redis command a budget of 2 s (also bounded by its
// context) and answers ErrUnavailable (503, Retry-After: 5) when Redis cannot
// be reached, rather than waiting for the lock timeout. For the budget to
// hold against a black-holed connection (not only a refused one), create
// the client with ContextTimeoutEnabled: true; otherwise go-redis waits for
// its ReadTimeout (3 s by default), and resubscribing after the outage takes
// seconds longer. With go-redis's default retries (3 retries, 5 dial
// attempts each) a refused connection also uses most of the 2 s; fewer
// retries (MaxRetries, DialerRetries) answer sooner. Renewals do not depend
// on the client's settings: their timeout is enforced by a local timer.
package redislocker
