// bus/queue.c - message records, queue lists and round-robin consumer selection.
#include "queue.h"
#include "util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

// Freelists: the broker is single-threaded, so plain static lists are enough. They are capped:
// after a backlog drains, records beyond the cap go back to malloc (and from there to the
// system, see hop_broker's idle trim) instead of pinning the peak's memory forever.
#define FREELIST_MAX 16384

static hop_msg_t *s_free_msgs;
static hop_entry_t *s_free_entries;
static hop_frames_t *s_free_frames;
static size_t s_free_msg_count, s_free_entry_count, s_free_frames_count;
static hop_queue_load_fn *s_loader; // reads spilled messages back (bus/durable.c)
static void *s_loader_arg;
static size_t s_live_msgs;    // message records in use
static uint64_t s_held_bytes; // bodies of the records a queue took (hop_msg_held_bytes)

size_t
hop_msg_live(void)
{
    return s_live_msgs;
}

uint64_t
hop_msg_held_bytes(void)
{
    return s_held_bytes;
}

hop_frames_t *
hop_frames_new(void)
{
    hop_frames_t *frames = s_free_frames;
    if (frames) {
        s_free_frames = frames->next;
        s_free_frames_count--;
    } else
        frames = hop_malloc(sizeof *frames);
    zmq_msg_init(&frames->header);
    zmq_msg_init(&frames->body);
    frames->refs = 0;
    frames->next = NULL;
    return frames;
}

void
hop_frames_release(hop_frames_t *frames)
{
    assert(frames);
    if (frames->refs > 1) {
        frames->refs--;
        return;
    }
    zmq_msg_close(&frames->header);
    zmq_msg_close(&frames->body);
    if (s_free_frames_count == FREELIST_MAX) {
        free(frames);
        return;
    }
    frames->next = s_free_frames;
    s_free_frames = frames;
    s_free_frames_count++;
}

hop_msg_t *
hop_msg_new(void)
{
    hop_msg_t *msg = s_free_msgs;
    if (msg) {
        s_free_msgs = msg->next;
        s_free_msg_count--;
    } else
        msg = hop_malloc(sizeof *msg);
    memset(msg, 0, sizeof *msg);
    s_live_msgs++;
    return msg;
}

void
hop_msg_attach(hop_msg_t *msg, hop_frames_t *frames)
{
    assert(msg && !msg->frames);
    assert(frames);
    msg->frames = frames;
    frames->refs++;
}

void
hop_msg_names(hop_msg_t *msg, const char *exchange, size_t exchange_len, const char *key,
              size_t key_len)
{
    assert(exchange_len <= UINT8_MAX && key_len <= UINT8_MAX);
    msg->exchange = exchange;
    msg->exchange_len = (uint8_t)exchange_len;
    msg->key = key;
    msg->key_len = (uint8_t)key_len;
}

void
hop_msg_own(hop_msg_t *msg, uint8_t *own, size_t exchange_len, size_t key_len)
{
    assert(!msg->own);
    const char *exchange = (const char *)own + sizeof(uint32_t);
    hop_msg_names(msg, exchange, exchange_len, exchange + exchange_len, key_len);
    msg->own = true;
}

zmq_msg_t *
hop_msg_body_frame(hop_msg_t *msg)
{
    hop_msg_attach(msg, hop_frames_new());
    return &msg->frames->body;
}

void
hop_msg_release(hop_msg_t *msg)
{
    assert(msg);
    if (msg->refs > 1) {
        msg->refs--;
        return;
    }
    if (msg->frames)
        hop_frames_release(msg->frames);
    if (msg->own)
        free((char *)msg->exchange - sizeof(uint32_t));
    s_live_msgs--;
    if (msg->held)
        s_held_bytes -= msg->body_len;
    if (s_free_msg_count == FREELIST_MAX) {
        free(msg);
        return;
    }
    msg->next = s_free_msgs;
    s_free_msgs = msg;
    s_free_msg_count++;
}

const uint8_t *
hop_msg_death(const hop_msg_t *msg, uint32_t *len)
{
    if (!msg->own) {
        *len = 0;
        return NULL;
    }
    const uint8_t *own = (const uint8_t *)msg->exchange - sizeof *len;
    memcpy(len, own, sizeof *len);
    if (*len == 0)
        return NULL; // bytes of its own but no deaths (a replayed message)
    return own + sizeof *len + msg->exchange_len + msg->key_len;
}

hop_entry_t *
hop_entry_new(hop_msg_t *msg)
{
    assert(msg);
    hop_entry_t *entry;
    bool embedded = !msg->entry_used;
    if (embedded) {
        // The first queue's entry lives in the message record: no allocation.
        entry = &msg->entry;
        msg->entry_used = true;
    } else if ((entry = s_free_entries)) {
        s_free_entries = entry->next;
        s_free_entry_count--;
    } else
        entry = hop_malloc(sizeof *entry);
    memset(entry, 0, sizeof *entry);
    entry->msg = msg;
    entry->embedded = embedded;
    msg->refs++;
    // Counted from the first queue on: the body is set by now and stays as it is.
    if (!msg->held) {
        msg->held = true;
        s_held_bytes += msg->body_len;
    }
    return entry;
}

void
hop_entry_destroy(hop_entry_t **entry_p)
{
    assert(entry_p);
    hop_entry_t *entry = *entry_p;
    if (!entry)
        return;
    *entry_p = NULL;
    hop_msg_t *msg = entry->msg;
    if (entry->embedded) {
        // The entry is part of msg: free the slot, then the release may recycle both.
        msg->entry_used = false;
        hop_msg_release(msg);
        return;
    }
    hop_msg_release(msg);
    if (s_free_entry_count == FREELIST_MAX) {
        free(entry);
        return;
    }
    entry->next = s_free_entries;
    s_free_entries = entry;
    s_free_entry_count++;
}

void
hop_records_trim(void)
{
    while (s_free_msgs) {
        hop_msg_t *next = s_free_msgs->next;
        free(s_free_msgs);
        s_free_msgs = next;
    }
    while (s_free_entries) {
        hop_entry_t *next = s_free_entries->next;
        free(s_free_entries);
        s_free_entries = next;
    }
    while (s_free_frames) {
        hop_frames_t *next = s_free_frames->next;
        free(s_free_frames);
        s_free_frames = next;
    }
    s_free_msg_count = s_free_entry_count = s_free_frames_count = 0;
}

void
hop_list_append(hop_list_t *list, hop_entry_t *entry)
{
    entry->next = NULL;
    entry->prev = list->tail;
    if (list->tail)
        list->tail->next = entry;
    else
        list->head = entry;
    list->tail = entry;
    list->size++;
}

void
hop_list_remove(hop_list_t *list, hop_entry_t *entry)
{
    if (entry->prev)
        entry->prev->next = entry->next;
    else
        list->head = entry->next;
    if (entry->next)
        entry->next->prev = entry->prev;
    else
        list->tail = entry->prev;
    entry->prev = entry->next = NULL;
    list->size--;
}

hop_queue_t *
hop_queue_new(const char *name, size_t len)
{
    hop_queue_t *self = hop_calloc(1, sizeof *self);
    self->name = hop_strndup(name, len);
    self->name_len = len;
    self->next_seq = 1;
    return self;
}

void
hop_queue_set_args(hop_queue_t *self, const hop_qargs_t *args)
{
    assert(self && args);
    assert(!self->levels && self->ready_count == 0);
    self->args = *args;
    if (args->max_priority)
        self->levels = hop_calloc(args->max_priority, sizeof *self->levels);
}

// Entries destroyed with the queue (ready and delayed alike).
static size_t
s_free_list(hop_list_t *list)
{
    size_t n = 0;
    while (list->head) {
        hop_entry_t *entry = list->head;
        hop_list_remove(list, entry);
        hop_entry_destroy(&entry);
        n++;
    }
    return n;
}

void
hop_queue_destroy(hop_queue_t **self_p)
{
    assert(self_p);
    hop_queue_t *self = *self_p;
    if (!self)
        return;
    assert(self->consumer_count == 0);
    hop_queue_purge(self);
    // Unacked entries stay in their connections' tag rings; orphan them there.
    for (hop_entry_t *e = self->unacked.head, *next; e; e = next) {
        next = e->next;
        e->prev = e->next = NULL;
        e->queue = NULL;
        e->consumer = NULL;
    }
    for (uint32_t l = 0; self->spills && l < hop_queue_nlevels(self); l++)
        hop_spill_destroy(&self->spills[l]);
    free(self->spills);
    free(self->levels);
    free(self->args.dlx);
    free(self->args.dlk);
    free(self->name);
    free(self);
    *self_p = NULL;
}

// The ready list an entry of this priority lives in.
static hop_list_t *
s_level(hop_queue_t *self, const hop_entry_t *entry)
{
    uint32_t p = entry->msg->priority;
    if (!self->levels || p == 0)
        return &self->ready;
    if (p > self->args.max_priority)
        p = self->args.max_priority;
    return &self->levels[p - 1];
}

// Links entry into list just before at (NULL: at the tail).
static void
s_insert_before(hop_list_t *list, hop_entry_t *at, hop_entry_t *entry)
{
    if (!at) {
        hop_list_append(list, entry);
        return;
    }
    entry->next = at;
    entry->prev = at->prev;
    if (at->prev)
        at->prev->next = entry;
    else
        list->head = entry;
    at->prev = entry;
    list->size++;
}

// Inserts a ready entry at its place by seq (ready lists stay sorted).
static void
s_ready_insert(hop_queue_t *self, hop_entry_t *entry)
{
    hop_list_t *list = s_level(self, entry);
    self->ready_count++;
    self->ready_bytes += entry->msg->body_len;
    if (!list->tail || list->tail->seq < entry->seq) {
        hop_list_append(list, entry);
        return;
    }
    // Back to its original place: before the first ready entry that is newer. Requeues of a
    // batch newest-first each stop at the head, so a dead consumer's window costs O(n).
    hop_entry_t *at = list->head;
    while (at->seq < entry->seq)
        at = at->next;
    s_insert_before(list, at, entry);
}

void
hop_queue_remove(hop_queue_t *self, hop_entry_t *entry)
{
    assert(self && entry && !entry->unacked && !entry->delayed);
    if (entry->spilled) {
        hop_spill_t *spill = hop_queue_spill(self, hop_queue_level_of(self, entry->msg->priority));
        hop_slot_t *slot = hop_spill_find_seq(spill, entry->seq);
        assert(slot && !hop_slot_on_disk(slot) && slot->entry == entry);
        hop_spill_hole(spill, slot);
        entry->spilled = false;
    } else
        hop_list_remove(s_level(self, entry), entry);
    self->ready_count--;
    self->ready_bytes -= entry->msg->body_len;
}

hop_entry_t *
hop_queue_push(hop_queue_t *self, hop_msg_t *msg, uint64_t now, uint64_t ttl)
{
    assert(self);
    hop_entry_t *entry = hop_entry_new(msg);
    entry->queue = self;
    entry->seq = self->next_seq++;
    entry->at = now;
    entry->expires_at = UINT64_MAX;
    if (ttl != HOP_TTL_NONE)
        entry->expires_at = now + ttl;
    if (self->args.has_ttl && now + self->args.message_ttl < entry->expires_at)
        entry->expires_at = now + self->args.message_ttl;
    // Once some of a level is spilled, everything after it is too, so that order holds.
    hop_list_t *list = s_level(self, entry);
    hop_spill_t *spill = hop_queue_spill(self, hop_queue_level_of(self, msg->priority));
    if (spill && (hop_spill_size(spill) || list->size >= self->window)) {
        hop_spill_push_entry(spill, entry->seq, entry, msg->body_len);
        entry->spilled = true;
    } else
        hop_list_append(list, entry);
    self->ready_count++;
    self->ready_bytes += msg->body_len;
    self->published++;
    return entry;
}

bool
hop_queue_full(const hop_queue_t *self, size_t body_len)
{
    return (self->args.max_length && self->ready_count + 1 > self->args.max_length) ||
           (self->args.max_length_bytes &&
            self->ready_bytes + body_len > self->args.max_length_bytes);
}

hop_entry_t *
hop_queue_head(hop_queue_t *self)
{
    assert(self);
    for (uint32_t l = hop_queue_nlevels(self); l-- > 0;) {
        hop_list_t *list = hop_queue_list(self, l);
        if (self->spills && list->size <= self->window / 4)
            hop_queue_fill(self, l, 0);
        if (list->head)
            return list->head;
    }
    return NULL;
}

hop_entry_t *
hop_queue_oldest(hop_queue_t *self)
{
    assert(self);
    hop_entry_t *oldest = NULL;
    for (uint32_t l = 0; l < hop_queue_nlevels(self); l++) {
        hop_list_t *list = hop_queue_list(self, l);
        if (self->spills && !list->head)
            hop_queue_fill(self, l, 0);
        hop_entry_t *e = list->head;
        if (e && (!oldest || e->seq < oldest->seq))
            oldest = e;
    }
    return oldest;
}

hop_entry_t *
hop_queue_take(hop_queue_t *self, uint64_t now)
{
    assert(self);
    hop_entry_t *entry = hop_queue_head(self);
    if (!entry)
        return NULL;
    hop_queue_remove(self, entry);
    hop_list_append(&self->unacked, entry);
    entry->unacked = true;
    entry->at = now;
    entry->deliveries++;
    self->delivered++;
    return entry;
}

void
hop_queue_untake(hop_queue_t *self, hop_entry_t *entry)
{
    assert(self);
    assert(entry && entry->unacked && entry->queue == self);
    hop_list_remove(&self->unacked, entry);
    entry->unacked = false;
    entry->deliveries--;
    self->delivered--;
    // It was the head when taken, so the sorted insert stops at once.
    s_ready_insert(self, entry);
}

void
hop_queue_unlink(hop_queue_t *self, hop_entry_t *entry)
{
    assert(self);
    assert(entry && entry->unacked && entry->queue == self);
    hop_list_remove(&self->unacked, entry);
    entry->unacked = false;
    entry->consumer = NULL;
    entry->tag = 0;
}

void
hop_queue_requeue(hop_queue_t *self, hop_entry_t *entry)
{
    hop_queue_unlink(self, entry);
    entry->redelivered = true;
    s_ready_insert(self, entry);
}

// Puts an entry that is in no list into the delayed list, ready again at due.
static void
s_delay_insert(hop_queue_t *self, hop_entry_t *entry, uint64_t due)
{
    entry->redelivered = true;
    entry->delayed = true;
    entry->at = due;
    // Sorted by due time; delays are mostly alike, so the place is near the tail.
    hop_entry_t *at = self->delayed.tail;
    while (at && at->at > due)
        at = at->prev;
    if (!at) {
        entry->prev = NULL;
        entry->next = self->delayed.head;
        if (self->delayed.head)
            self->delayed.head->prev = entry;
        else
            self->delayed.tail = entry;
        self->delayed.head = entry;
        self->delayed.size++;
        return;
    }
    entry->prev = at;
    entry->next = at->next;
    if (at->next)
        at->next->prev = entry;
    else
        self->delayed.tail = entry;
    at->next = entry;
    self->delayed.size++;
}

void
hop_queue_delay(hop_queue_t *self, hop_entry_t *entry, uint64_t due)
{
    hop_queue_unlink(self, entry);
    s_delay_insert(self, entry, due);
}

void
hop_queue_delay_ready(hop_queue_t *self, hop_entry_t *entry, uint64_t due)
{
    hop_queue_remove(self, entry);
    s_delay_insert(self, entry, due);
}

void
hop_queue_undelay(hop_queue_t *self, hop_entry_t *entry)
{
    assert(self && entry && entry->delayed);
    hop_list_remove(&self->delayed, entry);
    entry->delayed = false; // `at` stays: when it became ready again
    s_ready_insert(self, entry);
}

void
hop_queue_unsend(hop_queue_t *self, hop_entry_t *entry)
{
    bool was_redelivered = entry->redelivered;
    hop_queue_requeue(self, entry);
    entry->redelivered = was_redelivered;
    entry->deliveries--;
    self->delivered--;
}

void
hop_queue_settle(hop_queue_t *self, hop_entry_t *entry, bool acked)
{
    assert(self);
    assert(entry && entry->unacked && entry->queue == self);
    hop_list_remove(&self->unacked, entry);
    if (acked)
        self->acked++;
    hop_entry_destroy(&entry);
}

size_t
hop_queue_purge(hop_queue_t *self)
{
    assert(self);
    size_t n = s_free_list(&self->ready) + s_free_list(&self->delayed);
    for (uint32_t p = 0; self->levels && p < self->args.max_priority; p++)
        n += s_free_list(&self->levels[p]);
    for (uint32_t l = 0; self->spills && l < hop_queue_nlevels(self); l++) {
        hop_spill_t *spill = self->spills[l];
        for (hop_slot_t *slot; (slot = hop_spill_front(spill));) {
            if (!hop_slot_on_disk(slot)) {
                hop_entry_t *entry = slot->entry;
                entry->spilled = false;
                hop_entry_destroy(&entry);
            }
            hop_spill_pop(spill);
            n++;
        }
    }
    self->ready_count = 0;
    self->ready_bytes = 0;
    return n;
}

void
hop_queue_add_consumer(hop_queue_t *self, hop_consumer_t *consumer)
{
    assert(self);
    assert(consumer);
    consumer->queue = self;
    // Insert just before the cursor: the newcomer is served last in the current round.
    if (!self->consumers) {
        consumer->prev = consumer->next = consumer;
        self->consumers = consumer;
    } else {
        hop_consumer_t *at = self->consumers;
        consumer->next = at;
        consumer->prev = at->prev;
        at->prev->next = consumer;
        at->prev = consumer;
    }
    self->consumer_count++;
    self->had_consumer = true;
    if (consumer->exclusive)
        self->exclusive_consumer = true;
}

void
hop_queue_remove_consumer(hop_queue_t *self, hop_consumer_t *consumer)
{
    assert(self);
    assert(consumer && consumer->queue == self);
    if (consumer->next == consumer)
        self->consumers = NULL;
    else {
        consumer->prev->next = consumer->next;
        consumer->next->prev = consumer->prev;
        if (self->consumers == consumer)
            self->consumers = consumer->next;
    }
    consumer->prev = consumer->next = NULL;
    self->consumer_count--;
    if (consumer->exclusive)
        self->exclusive_consumer = false;
}

hop_consumer_t *
hop_queue_next_consumer(hop_queue_t *self)
{
    assert(self);
    hop_consumer_t *start = self->consumers;
    if (!start)
        return NULL;
    hop_consumer_t *c = start;
    do {
        bool credit = c->no_ack || c->prefetch == 0 || c->unacked < c->prefetch;
        if (credit && !c->stalled) {
            self->consumers = c->next; // the next round starts after this one
            return c;
        }
        c = c->next;
    } while (c != start);
    return NULL;
}

// Spilling ---------------------------------------------------------------------------------

void
hop_queue_enable_spill(hop_queue_t *self, uint32_t window)
{
    assert(self && window > 0);
    if (!self->spills) {
        self->spills = hop_calloc(hop_queue_nlevels(self), sizeof *self->spills);
        for (uint32_t l = 0; l < hop_queue_nlevels(self); l++)
            self->spills[l] = hop_spill_new();
    }
    self->window = window;
}

uint32_t
hop_queue_nlevels(const hop_queue_t *self)
{
    return self->levels ? 1 + self->args.max_priority : 1;
}

hop_list_t *
hop_queue_list(hop_queue_t *self, uint32_t level)
{
    return level ? &self->levels[level - 1] : &self->ready;
}

hop_spill_t *
hop_queue_spill(const hop_queue_t *self, uint32_t level)
{
    return self->spills ? self->spills[level] : NULL;
}

uint32_t
hop_queue_level_of(const hop_queue_t *self, uint8_t priority)
{
    if (!self->levels)
        return 0;
    return priority > self->args.max_priority ? self->args.max_priority : priority;
}

hop_entry_t *
hop_queue_next_ready(hop_queue_t *self, const hop_entry_t *e)
{
    assert(self);
    if (e && e->next)
        return e->next;
    uint32_t level = hop_queue_nlevels(self);
    if (e) {
        // The end of what is in memory of e's level: one more from its spill, if any.
        level = hop_queue_level_of(self, e->msg->priority);
        hop_list_t *list = hop_queue_list(self, level);
        if (self->spills && hop_queue_fill(self, level, list->size + 1) && e->next)
            return e->next;
    }
    while (level-- > 0) {
        hop_list_t *list = hop_queue_list(self, level);
        if (!list->head && self->spills)
            hop_queue_fill(self, level, 0);
        if (list->head)
            return list->head;
    }
    return NULL;
}

size_t
hop_queue_paged(const hop_queue_t *self)
{
    size_t n = 0;
    for (uint32_t l = 0; self->spills && l < hop_queue_nlevels(self); l++)
        n += hop_spill_size(self->spills[l]) - hop_spill_in_memory(self->spills[l]);
    return n;
}

void
hop_queue_set_loader(hop_queue_load_fn *fn, void *arg)
{
    s_loader = fn;
    s_loader_arg = arg;
}

// Puts an entry coming back from a spill into its ready list, by seq from the tail (it
// belongs at the tail, unless an entry made ready again by a delay is newer).
static void
s_fill_insert(hop_list_t *list, hop_entry_t *entry)
{
    hop_entry_t *at = list->tail;
    while (at && at->seq > entry->seq)
        at = at->prev;
    s_insert_before(list, at ? at->next : list->head, entry);
}

size_t
hop_queue_fill(hop_queue_t *self, uint32_t level, size_t want)
{
    assert(self);
    size_t n = 0;
    if (want < self->window)
        want = self->window;
    hop_list_t *list = hop_queue_list(self, level);
    hop_spill_t *spill = hop_queue_spill(self, level);
    hop_slot_t *slot;
    while (spill && list->size < want && (slot = hop_spill_front(spill))) {
        hop_entry_t *entry = NULL;
        if (!hop_slot_on_disk(slot)) {
            entry = slot->entry;
            entry->spilled = false;
        } else {
            uint64_t at = 0, expires_at = UINT64_MAX;
            hop_msg_t *msg = s_loader ? s_loader(s_loader_arg, self, slot, &at, &expires_at) : NULL;
            if (msg) {
                entry = hop_entry_new(msg);
                entry->queue = self;
                entry->seq = slot->seq;
                entry->at = at;
                entry->expires_at = expires_at;
                entry->redelivered = (slot->flags & HOP_SLOT_RECOVERED) != 0;
            } else {
                // Unreadable: the loader logged it and released the record.
                self->ready_count--;
                self->ready_bytes -= hop_slot_body_len(slot);
            }
        }
        hop_spill_pop(spill);
        if (entry) {
            s_fill_insert(list, entry);
            n++;
        }
    }
    return n;
}
