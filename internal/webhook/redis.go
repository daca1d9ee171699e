package webhook

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is the key prefix of a RedisOutbox without one.
const DefaultRedisPrefix = "tusgate:webhook:"

// RedisOutbox is an Outbox in Redis, shared by all instances using the same
// server and Prefix:
//
//   - HASH <Prefix>records maps record IDs to their JSON;
//   - ZSET <Prefix>due scores each record ID with the unix milliseconds at
//     which it becomes claimable: NextAttempt, or the end of its claim;
//   - HASH <Prefix>dead holds the buried records.
//
// Each operation is atomic (a Lua script or MULTI). Records are as durable
// as the server's persistence makes them: "appendonly yes" with
// "appendfsync always" for every write, "everysec" to risk the last second.
// Under Redis Cluster the three keys must share a slot: use a prefix with a
// hash tag, such as "{tusgate:webhook}:".
type RedisOutbox struct {
	Client redis.UniversalClient
	Prefix string // DefaultRedisPrefix if empty
}

// redisPutScript stores records that are not stored yet. KEYS: records, due.
// ARGV: id, JSON, due score, repeated.
var redisPutScript = redis.NewScript(`
for i = 1, #ARGV, 3 do
	if redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[i+1]) == 1 then
		redis.call("ZADD", KEYS[2], "NX", ARGV[i+2], ARGV[i])
	end
end
return 0
`)

// redisClaimScript claims up to ARGV[2] records due at ARGV[1] until
// ARGV[3] (unix ms) and returns their JSON. KEYS: records, due.
var redisClaimScript = redis.NewScript(`
local ids = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
	local v = redis.call("HGET", KEYS[1], id)
	if v then
		redis.call("ZADD", KEYS[2], ARGV[3], id)
		out[#out+1] = id
		out[#out+1] = v
	else
		redis.call("ZREM", KEYS[2], id)
	end
end
return out
`)

// redisRescheduleScript replaces the record ARGV[1] with the JSON ARGV[2]
// and makes it due at ARGV[3], unless it was deleted meanwhile. KEYS:
// records, due.
var redisRescheduleScript = redis.NewScript(`
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 then
	redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
	redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
end
return 0
`)

// keys returns the names of the records hash, the due set and the dead
// hash.
func (o *RedisOutbox) keys() (records, due, dead string) {
	p := o.Prefix
	if p == "" {
		p = DefaultRedisPrefix
	}
	return p + "records", p + "due", p + "dead"
}

// score renders t as a due score.
func score(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// Put implements Outbox; records already stored are kept as they are.
func (o *RedisOutbox) Put(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(recs))
	for _, rec := range recs {
		b, err := encodeRecord(rec, time.Time{})
		if err != nil {
			return err
		}
		args = append(args, rec.ID, b, score(rec.NextAttempt))
	}
	records, due, _ := o.keys()
	return redisPutScript.Run(ctx, o.Client, []string{records, due}, args...).Err()
}

// Claim implements Outbox, in due order.
func (o *RedisOutbox) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Record, error) {
	if max <= 0 {
		return nil, nil
	}
	records, due, _ := o.keys()
	until := now.Add(lease)
	res, err := redisClaimScript.Run(ctx, o.Client, []string{records, due}, score(now), max, score(until)).StringSlice()
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		id, b := res[i], []byte(res[i+1])
		rec, err := decodeRecord(b, id)
		if err != nil {
			if err := o.bury(ctx, id, b); err != nil {
				return out, err
			}
			continue
		}
		rec.ClaimedUntil = until
		out = append(out, rec)
	}
	return out, nil
}

// Reschedule implements Outbox. A record deleted meanwhile stays deleted.
func (o *RedisOutbox) Reschedule(ctx context.Context, rec Record) error {
	b, err := encodeRecord(rec, time.Time{})
	if err != nil {
		return err
	}
	records, due, _ := o.keys()
	return redisRescheduleScript.Run(ctx, o.Client, []string{records, due}, rec.ID, b, score(rec.NextAttempt)).Err()
}

// Delete implements Outbox.
func (o *RedisOutbox) Delete(ctx context.Context, id string) error {
	if err := checkRecordID(id); err != nil {
		return err
	}
	records, due, _ := o.keys()
	_, err := o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, records, id)
		p.ZRem(ctx, due, id)
		return nil
	})
	return err
}

// Bury implements Outbox: the record moves to the hash <Prefix>dead.
func (o *RedisOutbox) Bury(ctx context.Context, rec Record) error {
	b, err := encodeRecord(rec, time.Time{})
	if err != nil {
		return err
	}
	return o.bury(ctx, rec.ID, b)
}

// bury moves the record id, stored as b, to the dead hash.
func (o *RedisOutbox) bury(ctx context.Context, id string, b []byte) error {
	records, due, dead := o.keys()
	_, err := o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, dead, id, b)
		p.HDel(ctx, records, id)
		p.ZRem(ctx, due, id)
		return nil
	})
	return err
}
