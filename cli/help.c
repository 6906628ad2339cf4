// cli/help.c - the help of `hopper` and of each command: usage, what it does, every flag,
// an example, and the exit codes. `hopper help TOPIC` and `hopper TOPIC --help` print it.
#include "cli.h"

#include <string.h>

static const char s_overview[] =
    "Usage: hopper [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
    "\n"
    "The command-line client of the Hopper message bus: declare exchanges and queues, publish,\n"
    "consume, inspect. Every command talks to one hopperd.\n"
    "\n"
    "Commands:\n"
    "  declare exchange NAME --type T   create an exchange (direct, fanout or topic)\n"
    "  declare queue NAME               create a queue (\"\" for a server-named one), with\n"
    "                                   limits, TTLs, dead letters, retries, priorities\n"
    "  bind QUEUE EXCHANGE [--key K]    route messages from an exchange to a queue\n"
    "  unbind QUEUE EXCHANGE [--key K]  remove such a route\n"
    "  publish EXCHANGE KEY [BODY]      send messages (BODY, or stdin)\n"
    "  consume QUEUE                    print and acknowledge messages as they arrive\n"
    "  subscribe EXCHANGE [PATTERN]     print messages published to an exchange from now on\n"
    "  get QUEUE                        take one message, if there is one\n"
    "  peek QUEUE [--count N]           show the next messages without taking them\n"
    "  move SOURCE EXCHANGE [--key K]   republish a queue's ready messages to an exchange\n"
    "  replay DEAD_LETTER_QUEUE         send dead letters back where they first came from\n"
    "  trace on|off [--exchange X]      route events for every message (or one exchange's)\n"
    "  trace show [--count N]           print route events as they happen\n"
    "  list WHAT                        queues, exchanges, bindings, consumers, connections,\n"
    "                                   unacked [QUEUE] (deliveries waiting for an ack)\n"
    "  purge QUEUE                      drop the ready messages of a queue\n"
    "  delete queue|exchange NAME       remove a queue or an exchange\n"
    "  status                           the broker's version, uptime and counters\n"
    "  top [--interval MS]              a live view of the broker and its queues\n"
    "  bench ...                        measure throughput and latency (hopper bench --help)\n"
    "  help [COMMAND]                   this text, or the help of a command\n"
    "\n"
    "Global options (before or after the command):\n"
    "  --broker ENDPOINT  the broker to talk to (default: $HOPPER_BROKER, else\n"
    "                     tcp://127.0.0.1:5680)\n"
    "  --timeout MS       give up on any answer from the broker after MS ms (default 5000);\n"
    "                     consume and subscribe still wait for messages as long as it takes\n"
    "  --json             machine-readable output: JSON documents, one delivery per line;\n"
    "                     for publish, the body is JSON to send as msgpack\n"
    "  -h, --help         help (of the command, when given after one)\n"
    "  --version          print the version and exit\n"
    "\n"
    "Example:\n"
    "  hopper declare queue jobs && hopper publish \"\" jobs 'hello' && hopper get jobs\n";

static const char s_exit_codes[] =
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  the broker refused the request (the message says why and what to do)\n"
    "  2  usage error: bad arguments or options, or a body that is not valid JSON under --json\n"
    "  3  the broker could not be reached, or did not answer, within --timeout, or the\n"
    "     connection to it was lost (consume and subscribe exit at once)\n";

static const char s_globals_note[] =
    "Global options --broker, --timeout and --json work with every command (hopper --help).\n";

static const char s_declare_exchange[] =
    "Usage: hopper declare exchange NAME --type direct|fanout|topic [--durable] [--auto-delete]\n"
    "                               [--passive]\n"
    "\n"
    "Creates an exchange. Declaring one that exists with the same properties does nothing;\n"
    "with other properties it is refused. Exchanges route what is published to them to the\n"
    "queues bound to them: direct by exact key, fanout to all, topic by pattern. Prints\n"
    "nothing on success.\n"
    "\n"
    "Options:\n"
    "  --type T       direct, fanout or topic (required unless --passive)\n"
    "  --durable      survive a broker restart\n"
    "  --auto-delete  delete the exchange when its last binding is removed\n"
    "  --passive      only check that it exists (exit 1 when it does not); creates nothing\n"
    "\n"
    "Example:\n"
    "  hopper declare exchange events --type topic --durable\n";

static const char s_declare_queue[] =
    "Usage: hopper declare queue NAME [--durable] [--exclusive] [--auto-delete] [--passive]\n"
    "                             [QUEUE ARGUMENTS]\n"
    "\n"
    "Creates a queue and prints its name; NAME \"\" asks the broker to name it (amq.gen-...).\n"
    "Declaring one that exists with the same properties does nothing; with other properties\n"
    "it is refused. Every queue can be reached through the default exchange \"\" with its\n"
    "name as the routing key. With --json prints {\"queue\", \"messages\", \"consumers\"}.\n"
    "\n"
    "Options:\n"
    "  --durable      survive a broker restart (with its persistent messages)\n"
    "  --exclusive    only this connection may use it, and it goes when the connection does;\n"
    "                 from the CLI that is as soon as the command ends\n"
    "  --auto-delete  delete the queue when its last consumer is cancelled\n"
    "  --passive      only check that it exists (exit 1 when it does not) and print it\n"
    "\n"
    "Queue arguments (fixed by the first declare: declaring it again with a different value\n"
    "is refused, leaving one out accepts what is in force; times are in milliseconds):\n"
    "  --max-length N               hold at most N ready messages (unacked and delayed ones\n"
    "                               do not count)\n"
    "  --max-length-bytes B         hold at most B bytes of ready message bodies\n"
    "  --overflow drop-head|reject-publish\n"
    "                               what a full queue does with a new message: drop (or\n"
    "                               dead-letter, reason maxlen) its oldest ready message\n"
    "                               (default), or refuse the new one: its publisher gets a\n"
    "                               negative confirm (hopper publish --confirm exits 1)\n"
    "  --message-ttl MS             a message expires MS ms after it entered the queue; the\n"
    "                               expired ones are dropped or dead-lettered (reason\n"
    "                               expired)\n"
    "  --expires MS                 delete the queue once it has been unused for MS ms (no\n"
    "                               consumer, no get, no declare)\n"
    "  --max-deliveries N           a message delivered N times that comes back again (nack\n"
    "                               or reject with requeue, retry, consumer gone, ack\n"
    "                               deadline) is dead-lettered (reason delivery-limit)\n"
    "                               instead of requeued\n"
    "  --dead-letter-exchange X     republish dead letters (rejected or nacked without\n"
    "                               requeue, expired, dropped by drop-head, over\n"
    "                               --max-deliveries) to exchange X (\"\": the default\n"
    "                               exchange); without it they are dropped\n"
    "  --dead-letter-key K          route dead letters with key K instead of their own\n"
    "                               routing key (needs --dead-letter-exchange)\n"
    "  --retry-backoff INITIAL[:MAX]\n"
    "                               a message requeued by nack/reject waits before it is\n"
    "                               ready again: INITIAL ms, doubling with each delivery up to\n"
    "                               MAX ms (without MAX: always INITIAL)\n"
    "  --max-priority P             deliver higher priorities first (1..255; see hopper\n"
    "                               publish --priority), in order within one priority\n"
    "  --ack-timeout MS             a consumer must settle each message within MS ms (at least\n"
    "                               1000; default: the broker's --ack-timeout, 30 minutes);\n"
    "                               late ones are revoked and go back to the queue\n"
    "\n"
    "Examples:\n"
    "  hopper declare queue jobs --durable\n"
    "  hopper --json declare queue jobs --passive     # {\"queue\":\"jobs\",\"messages\":3,...}\n"
    "  hopper declare queue work --max-length 10000 --overflow reject-publish \\\n"
    "      --dead-letter-exchange \"\" --dead-letter-key work.dead --max-deliveries 5\n"
    "  hopper declare queue retries --retry-backoff 1000:60000 --message-ttl 86400000\n";

static const char s_declare[] = "Usage: hopper declare exchange|queue NAME [OPTIONS]\n"
                                "\n"
                                "Creates an exchange or a queue: see the two commands below.\n";

static const char s_bind[] =
    "Usage: hopper bind QUEUE EXCHANGE [--key KEY]\n"
    "\n"
    "Routes the messages published to EXCHANGE to QUEUE: on a direct exchange those whose\n"
    "routing key equals KEY, on a topic exchange those matching the pattern KEY (words\n"
    "separated by '.', '*' matches one word, '#' zero or more), on a fanout exchange all of\n"
    "them. Binding twice is harmless. Prints nothing on success.\n"
    "\n"
    "Options:\n"
    "  --key KEY  binding key or topic pattern (default \"\")\n"
    "\n"
    "Example:\n"
    "  hopper bind audit events --key 'order.#'\n";

static const char s_unbind[] = "Usage: hopper unbind QUEUE EXCHANGE [--key KEY]\n"
                               "\n"
                               "Removes the binding made by 'hopper bind' with the same QUEUE,\n"
                               "EXCHANGE and KEY. Removing a binding that does not exist is\n"
                               "harmless. Prints nothing on success.\n"
                               "\n"
                               "Options:\n"
                               "  --key KEY  the binding key to remove (default \"\")\n"
                               "\n"
                               "Example:\n"
                               "  hopper unbind audit events --key 'order.#'\n";

static const char s_publish[] =
    "Usage: hopper publish EXCHANGE ROUTING_KEY [BODY] [OPTIONS]\n"
    "\n"
    "Publishes a message to EXCHANGE (\"\" is the default exchange, which delivers to the\n"
    "queue named ROUTING_KEY). The body is BODY, or else all of stdin, byte for byte; with\n"
    "--lines each line of stdin is one message. After publishing, hopper waits for the\n"
    "broker once, so that a refusal (unknown exchange, body too large) ends in exit 1.\n"
    "A message the exchange routes to no queue is dropped, as in AMQP; through the default\n"
    "exchange to a queue that does not exist, hopper warns on stderr (exit 0). Prints\n"
    "nothing on success.\n"
    "\n"
    "Options:\n"
    "  --lines               one message per line of stdin (line endings removed; under\n"
    "                        --json blank lines are skipped)\n"
    "  --json                the body is JSON: send it as msgpack with content_type\n"
    "                        application/msgpack (unless --content-type says otherwise)\n"
    "  --count N             publish each message N times (default 1)\n"
    "  --header K=V          an application header (repeatable)\n"
    "  --content-type T      e.g. text/plain\n"
    "  --message-id ID       application message id\n"
    "  --correlation-id ID   request/reply correlation id\n"
    "  --reply-to QUEUE      the queue a reply should go to\n"
    "\n"
    "Delivery guarantees:\n"
    "  --confirm             publisher confirms: wait until the broker has confirmed every\n"
    "                        message as stored in each queue it routes to. If it refused any\n"
    "                        (a full queue with --overflow reject-publish, an unknown\n"
    "                        exchange, ...), say how many and why on stderr and exit 1\n"
    "  --mandatory           a message that matches no queue is returned instead of dropped:\n"
    "                        each one is reported on stderr and the exit code is 1 (implies\n"
    "                        --confirm)\n"
    "  --expiration MS       the message expires MS ms after it enters a queue (the queue's\n"
    "                        --message-ttl, when shorter, wins)\n"
    "  --priority P          priority 0..255, for queues declared with --max-priority\n"
    "  --persistent          keep the message on disk in durable queues\n"
    "\n"
    "Examples:\n"
    "  hopper publish \"\" jobs 'resize img-42.png'\n"
    "  hopper publish events order.created --json '{\"id\": 42, \"total\": 9.5}'\n"
    "  seq 1000 | hopper publish \"\" jobs --lines --header source=seq\n"
    "  seq 1000 | hopper publish \"\" jobs --lines --confirm --persistent\n"
    "  hopper publish orders order.paid 'p-42' --mandatory --priority 9\n";

static const char s_delivery_format[] =
    "\n"
    "Output, one line per message:\n"
    "  [EXCHANGE -> ROUTING_KEY] tag=N redelivered=yes|no count=N [priority=P]\n"
    "      [deaths=REASON:QUEUE:COUNT,...] BODY\n"
    "where count is how many times it has been delivered; priority shows when it was\n"
    "published with one; deaths shows when it is a dead letter: why (rejected, expired,\n"
    "maxlen, delivery-limit) it left which queue and how many times, newest first. BODY is\n"
    "the text itself when it is UTF-8 on one line, a JSON string when it is UTF-8 with line\n"
    "breaks or control characters, JSON when it is msgpack, and hex:... otherwise.\n"
    "With --json, one object per line with exchange, routing_key, delivery_tag,\n"
    "redelivered, delivery_count, priority (when set), deaths (for a dead letter: an\n"
    "array, newest first, of {reason, queue, exchange, routing_key, time (ms since the\n"
    "epoch), count}), headers, properties (content_type, message_id, ...), body and\n"
    "body_encoding:\n"
    "  - \"msgpack\": the body decoded (content_type application/msgpack, or a body that is\n"
    "    exactly one msgpack value and not UTF-8 text); body is that value\n"
    "  - \"text\": the body is UTF-8; body is a string\n"
    "  - \"base64\": anything else; body is a base64 string of the bytes\n"
    "msgpack binary values show as base64 strings, ext values as null.\n";

static const char s_consume[] =
    "Usage: hopper consume QUEUE [--count N] [--prefetch N] [--no-ack] [--idle-timeout MS]\n"
    "                            [--nack|--reject [--requeue] | --retry-in MS]\n"
    "                            [--ack-timeout MS] [--exclusive]\n"
    "\n"
    "Prints the messages of QUEUE as they arrive and acknowledges each once it is printed\n"
    "(a message hopper fails to print goes back to the queue). Runs until --count messages,\n"
    "--idle-timeout, Ctrl-C / SIGTERM, or until the reader of its output goes away (| head),\n"
    "then cancels the consumer and exits 0; messages received but not yet printed go back\n"
    "to the queue, flagged redelivered (so with --count up to 100, prefetch defaults to\n"
    "1: at most one message beyond the count is received and handed back). A lost\n"
    "connection to the broker ends it with exit code 3.\n"
    "\n"
    "Options:\n"
    "  --count N          stop after N messages\n"
    "  --prefetch N       at most N unacknowledged messages in flight (default 100, or 1\n"
    "                     with --count up to 100; 0 = no limit)\n"
    "  --no-ack           the broker forgets each message as it sends it (fastest; a message\n"
    "                     is lost if hopper dies). With --count, hopper acks each message\n"
    "                     as it arrives instead, so that none beyond the count is lost\n"
    "  --idle-timeout MS  stop after MS ms without a message\n"
    "  --nack             negatively acknowledge instead of acking: the message is\n"
    "                     dead-lettered (reason rejected) when the queue has a\n"
    "                     --dead-letter-exchange, else dropped\n"
    "  --reject           reject instead of acking: likewise\n"
    "  --requeue          with --nack or --reject: put the message back in the queue instead\n"
    "                     (after the queue's --retry-backoff delay, if it has one); past the\n"
    "                     queue's --max-deliveries it is dead-lettered instead\n"
    "  --retry-in MS      instead of acking, hand each message back to be retried in MS ms\n"
    "                     (0: at once); meanwhile it is delayed (list queues: DELAYED) and\n"
    "                     other messages keep flowing\n"
    "  --ack-timeout MS   the broker revokes a message not settled within MS ms (at least\n"
    "                     1000; default: the queue's --ack-timeout, else the broker's) and\n"
    "                     puts it back; hopper warns on stderr when that happens\n"
    "  --exclusive        be the queue's only consumer (refused if it has others)\n"
    "  --json             one JSON object per message (see below)\n"
    "\n"
    "Examples:\n"
    "  hopper consume jobs\n"
    "  hopper consume jobs --count 10 --json | jq .body\n"
    "  hopper consume jobs --count 1 --reject          # to the dead-letter exchange\n"
    "  hopper consume jobs --count 1 --retry-in 30000  # try again in 30 s\n";

static const char s_subscribe[] =
    "Usage: hopper subscribe EXCHANGE [PATTERN] [--count N] [--idle-timeout MS]\n"
    "\n"
    "Prints the messages published to EXCHANGE from now on, through a private queue the\n"
    "broker creates for this command and removes when it ends. PATTERN is the binding key\n"
    "(default: '#', everything, on a topic exchange; \"\" otherwise). Messages are not\n"
    "acknowledged one by one (the private queue is no-ack). Runs until --count messages,\n"
    "--idle-timeout, Ctrl-C / SIGTERM or until the reader of its output goes away, then\n"
    "exits 0; a lost connection to the broker ends it with exit code 3.\n"
    "\n"
    "Options:\n"
    "  --count N          stop after N messages\n"
    "  --idle-timeout MS  stop after MS ms without a message\n"
    "  --json             one JSON object per message (see below)\n"
    "\n"
    "Example:\n"
    "  hopper subscribe events 'order.*'\n";

static const char s_get[] =
    "Usage: hopper get QUEUE [--no-ack] [--nack|--reject [--requeue] | --retry-in MS]\n"
    "\n"
    "Takes one message from QUEUE, prints it and acknowledges it. An empty queue is not an\n"
    "error (as with rabbitmqadmin get): nothing is printed on stdout, 'queue QUEUE is empty'\n"
    "on stderr, and the exit code is 0. The output is that of consume; with --json the\n"
    "object also has message_count, the ready messages left in the queue.\n"
    "\n"
    "Options:\n"
    "  --no-ack       the broker forgets the message as it sends it\n"
    "  --nack         nack instead of acking (the message is dead-lettered when the queue\n"
    "                 has a --dead-letter-exchange, else dropped; or see --requeue)\n"
    "  --reject       reject instead of acking (likewise)\n"
    "  --requeue      with --nack or --reject: put it back, to peek at the queue's head\n"
    "  --retry-in MS  hand it back to be ready again in MS ms (0: at once)\n"
    "  --json         print the message as a JSON object\n"
    "\n"
    "Examples:\n"
    "  hopper get jobs\n"
    "  hopper get jobs --reject --requeue    # look without taking\n"
    "  hopper get jobs.dead --json | jq .deaths   # why a dead letter died\n";

static const char s_peek[] =
    "Usage: hopper peek QUEUE [--count N] [--json]\n"
    "\n"
    "Prints the next N (default 10, at most 1000) ready messages of QUEUE in the order they\n"
    "would be delivered (highest priority first), without taking them: nothing about them\n"
    "changes (not their redelivered flag, not their delivery count), no consumer sees a\n"
    "difference. Delayed and unacked messages are not shown (see hopper list unacked). The\n"
    "output is that of get without the delivery tag; count is how many times the message\n"
    "was delivered so far. One answer holds about 60 KB: it may show fewer messages, and a\n"
    "large body only its start (cut=SHOWN/WHOLE; with --json body_truncated and body_size).\n"
    "On stderr: how many of the queue's ready messages were shown, or that it has none\n"
    "(exit 0). An unknown queue exits 1.\n"
    "\n"
    "Options:\n"
    "  --count N  how many messages, from the head (1 to 1000; default 10)\n"
    "  --json     one JSON object per message, as get prints, plus body_size and\n"
    "             body_truncated\n"
    "\n"
    "Examples:\n"
    "  hopper peek jobs\n"
    "  hopper peek jobs.dead --count 100 --json | jq '.deaths[-1]'   # where they came from\n";

static const char s_move[] =
    "Usage: hopper move SOURCE DEST_EXCHANGE [--key K] [--count N] [--filter HEADER=VALUE]\n"
    "                   [--json]\n"
    "\n"
    "Republishes the ready messages of queue SOURCE, in delivery order, to DEST_EXCHANGE (\"\"\n"
    "is the default exchange: --key names the queue) with routing key K, or each message's\n"
    "own key. Each message moves atomically inside the broker: it is stored in the queues it\n"
    "routes to and only then taken out of SOURCE, so an interrupted move (Ctrl-C, a lost\n"
    "connection) loses and duplicates nothing. Body, props, priority, persistence and death\n"
    "records are kept; so is what is left of its TTL. Messages that route nowhere (or only to\n"
    "full reject-publish queues) or do not match --filter stay in SOURCE and count as\n"
    "skipped. Unacked and delayed messages are not moved. Prints \"moved N, skipped M, left L\"\n"
    "(left: ready messages still in SOURCE; skipped: as the last of the broker's rounds of\n"
    "1000 saw them). An unknown queue or exchange exits 1.\n"
    "\n"
    "Options:\n"
    "  --key K                route with K instead of each message's own routing key\n"
    "  --count N              move at most N messages (default: all those ready now)\n"
    "  --filter HEADER=VALUE  only messages whose header HEADER (props.headers; else a\n"
    "                         property such as type or message_id) is VALUE (a string, or a\n"
    "                         number or boolean written the same way)\n"
    "  --json                 print {\"moved\":N,\"skipped\":M,\"left\":L}\n"
    "\n"
    "Examples:\n"
    "  hopper move jobs.parked \"\" --key jobs          # back into queue jobs\n"
    "  hopper move jobs.dead archive --filter tenant=acme --count 100\n";

static const char s_replay[] =
    "Usage: hopper replay DEAD_LETTER_QUEUE [--count N] [--json]\n"
    "\n"
    "Republishes the dead letters in DEAD_LETTER_QUEUE to the exchange and routing key they\n"
    "were first published to: the oldest (last) record of their death array. They arrive\n"
    "without death records, as if newly published (body, props, priority and persistence\n"
    "kept), so a queue's delivery limit counts afresh. Each message moves atomically inside\n"
    "the broker (see hopper move): an interrupted replay loses and duplicates nothing.\n"
    "Messages without a death record, or whose exchange is gone or routes nowhere, stay and\n"
    "count as skipped. Prints \"moved N, skipped M, left L\". An unknown queue exits 1.\n"
    "\n"
    "Options:\n"
    "  --count N  replay at most N messages, from the head (default: all those ready now)\n"
    "  --json     print {\"moved\":N,\"skipped\":M,\"left\":L}\n"
    "\n"
    "Examples:\n"
    "  hopper peek jobs.dead --json | jq '.deaths[-1]'   # where they will go\n"
    "  hopper replay jobs.dead\n";

static const char s_trace[] =
    "Usage: hopper trace on [--exchange X]\n"
    "       hopper trace off\n"
    "       hopper trace show [--count N] [--json]\n"
    "\n"
    "While tracing is on, the broker publishes one route event per message to the built-in\n"
    "topic exchange amq.hopper.trace: where a publish went (the queues it matched) or why a\n"
    "message was dropped. Tracing is broker-wide and stays on until 'hopper trace off'; off,\n"
    "it costs the broker nothing. Events (docs/PROTOCOL.md, section 4.9) are msgpack maps with\n"
    "event (publish, drop, expired, dead-letter), exchange, key, queues, dropped (unroutable,\n"
    "overflow, maxlen, ttl, rejected, delivery-limit, dead-lettered), reason, queue and time,\n"
    "routed with keys such as publish.EXCHANGE, drop.REASON, expired.REASON, dead-letter.DLX:\n"
    "'hopper subscribe amq.hopper.trace \"drop.#\"' reads only the drops.\n"
    "\n"
    "  on    start tracing; with --exchange X, only events about messages published to X\n"
    "        (or dead-lettered to X)\n"
    "  off   stop tracing\n"
    "  show  subscribe to amq.hopper.trace and print each event as one line:\n"
    "          TIME EVENT exchange=X key=K queues=Q1,Q2 [refused=Q] [dropped=R] [reason=R]\n"
    "          [queue=Q]\n"
    "        until N events (--count) or Ctrl-C; with --json, one JSON object per line\n"
    "\n"
    "Options:\n"
    "  --exchange X  (on) trace only messages published to exchange X\n"
    "  --count N     (show) stop after N events\n"
    "  --json        (show) JSON Lines; (on, off) print {\"tracing\":true|false}\n"
    "\n"
    "Examples:\n"
    "  hopper trace on --exchange orders\n"
    "  hopper trace show --count 10\n"
    "  hopper trace off\n";

static const char s_list[] =
    "Usage: hopper list queues|exchanges|bindings|consumers|connections [--columns A,B,...]\n"
    "                   [--sort FIELD] [--json]\n"
    "       hopper list unacked [QUEUE] [--sort age|queue|consumer|connection] [--json]\n"
    "\n"
    "Prints what the broker holds as an aligned table, or with --json as a JSON array of\n"
    "objects with every field the broker reports (docs/PROTOCOL.md, section 4.7):\n"
    "  queues       name, durable, exclusive, auto_delete, messages_ready, messages_unacked,\n"
    "               messages_delayed, messages (all three), bytes_ready, consumers,\n"
    "               published, delivered, acked, dead_lettered, dropped, expired,\n"
    "               rejected_publishes, oldest_ready_ms, publish_rate, deliver_rate,\n"
    "               ack_rate (per second, smoothed over a few seconds, to 0.01), and the\n"
    "               queue arguments that are set (max_length, overflow, message_ttl, ...)\n"
    "  exchanges    name, type, durable, auto_delete, bindings, published, unroutable\n"
    "  bindings     exchange, queue, key\n"
    "  consumers    queue, consumer, connection, prefetch, no_ack, exclusive, unacked,\n"
    "               delivered, ack_timeout\n"
    "  connections  connection, name, peer, heartbeat, last_seen_ms, consumers, unacked,\n"
    "               connected_ms\n"
    "  unacked      one row per delivery waiting for an ack (of QUEUE only, when given):\n"
    "               queue, consumer (\"\" for a get; (get) in the table), connection, tag\n"
    "               (the delivery tag), delivered_ms_ago (AGE_MS), count (times delivered)\n"
    "In the table the default exchange shows as (default), an empty string as \"\", the\n"
    "true flags in FLAGS (e.g. durable,auto-delete), and a queue's arguments in ARGUMENTS\n"
    "as the options of hopper declare queue that set them (e.g. max-length=1000\n"
    "overflow=reject-publish). Queue columns: READY, UNACKED (delivered, not yet settled),\n"
    "DELAYED (waiting for a retry), DEAD_LETTERED (sent to the dead-letter exchange so far),\n"
    "CONSUMERS, the PUBLISHED, DELIVERED and ACKED totals and their rates per second\n"
    "(PUBLISH/S, DELIVER/S, ACK/S).\n"
    "\n"
    "Options:\n"
    "  --columns A,B,...  the table's columns, in this order: any field above (e.g.\n"
    "                     oldest_ready_ms, bytes_ready, dropped, a flag, an argument) or a\n"
    "                     header of the table (ready, publish/s, flags, arguments), any case\n"
    "  --sort FIELD       order the rows (and --json items) by a field or header: numbers\n"
    "                     largest first, text A to Z, rows without it last\n"
    "  --json             every field of every item, whatever --columns says\n"
    "\n"
    "Unacked rows come oldest first; --sort queue|consumer|connection groups them (oldest\n"
    "first within a group). One answer holds about 60 KB of rows (some 400): the newest are\n"
    "left off then, and stderr says how many. An unknown QUEUE exits 1.\n"
    "\n"
    "Examples:\n"
    "  hopper list queues\n"
    "  hopper list queues --json | jq '.[] | select(.messages_ready > 0) | .name'\n"
    "  hopper list queues --json | jq '.[] | {name, dead_lettered, expired, dropped}'\n"
    "  hopper list queues --columns name,ready,oldest_ready_ms,publish_rate --sort ready\n"
    "  hopper list unacked jobs          # who holds what, oldest first\n";

static const char s_purge[] = "Usage: hopper purge QUEUE\n"
                              "\n"
                              "Drops the ready messages of QUEUE (not those delivered and not\n"
                              "yet acknowledged) and prints how many. With --json prints\n"
                              "{\"queue\", \"messages\"}.\n"
                              "\n"
                              "Example:\n"
                              "  hopper purge jobs\n";

static const char s_delete_queue[] =
    "Usage: hopper delete queue NAME [--if-empty] [--if-unused]\n"
    "\n"
    "Deletes a queue and its messages, and prints how many messages went with it (with\n"
    "--json {\"queue\", \"messages\"}). Its consumers are cancelled.\n"
    "\n"
    "Options:\n"
    "  --if-empty   only if it holds no message (ready or unacknowledged)\n"
    "  --if-unused  only if it has no consumer\n"
    "\n"
    "Example:\n"
    "  hopper delete queue jobs --if-empty\n";

static const char s_delete_exchange[] =
    "Usage: hopper delete exchange NAME [--if-unused]\n"
    "\n"
    "Deletes an exchange and its bindings. The default exchange \"\" and the amq.* exchanges\n"
    "cannot be deleted. Prints nothing on success.\n"
    "\n"
    "Options:\n"
    "  --if-unused  only if it has no binding\n"
    "\n"
    "Example:\n"
    "  hopper delete exchange events --if-unused\n";

static const char s_delete[] = "Usage: hopper delete queue|exchange NAME [OPTIONS]\n"
                               "\n"
                               "Deletes a queue or an exchange: see the two commands below.\n";

static const char s_status[] =
    "Usage: hopper status [--json]\n"
    "\n"
    "Prints the broker's version, uptime, endpoint, data directory and counters as\n"
    "'key: value' lines (with --json, one JSON object). A quick check that the broker is up:\n"
    "exit 0 when it answers, 3 when it does not. The counters (docs/PROTOCOL.md 4.7) include\n"
    "messages_ready, messages_unacked, messages_delayed and, since the broker started:\n"
    "published, delivered, acked, unroutable, returned (mandatory messages sent back),\n"
    "confirmed (publisher confirms sent), rejected_publishes (refused by full\n"
    "reject-publish queues), dead_lettered, dropped, expired and revoked (deliveries past\n"
    "their ack deadline). Also the rates per second publish_rate, deliver_rate and ack_rate\n"
    "(smoothed over a few seconds), and memory: rss_bytes (the process's resident memory)\n"
    "beside what the broker knows it holds, messages_bytes (bodies of the messages in\n"
    "queues, each once) and message_records (message records alive).\n"
    "\n"
    "Example:\n"
    "  hopper status\n";

static const char s_top[] =
    "Usage: hopper top [--interval MS]\n"
    "\n"
    "A live full-screen view of the broker: its totals (connections, consumers, messages,\n"
    "publish/deliver/ack rates per second, memory: RSS and what it holds, disk) above a\n"
    "table of its queues by name (READY, UNACKED, CONSUMERS, PUBLISH/S, DELIVER/S, ACK/S,\n"
    "OLDEST_MS: age of the oldest ready message). It redraws every MS ms; any key redraws\n"
    "at once; q or Ctrl-C leaves and gives the terminal back as it was. Needs a terminal\n"
    "that $TERM names (any terminfo knows, e.g. xterm, screen, vt100); for programs use\n"
    "hopper status --json and hopper list queues --json. When the broker stops answering,\n"
    "the screen says so and keeps retrying.\n"
    "\n"
    "Options:\n"
    "  --interval MS  time between refreshes (default 1000, at least 100); the broker\n"
    "                 samples its rates once a second\n"
    "\n"
    "Example:\n"
    "  hopper top --broker tcp://10.0.0.5:5680\n";

static const char s_help[] = "Usage: hopper help [COMMAND [SUBCOMMAND]]\n"
                             "\n"
                             "Prints the help of hopper, or of a command (the same as\n"
                             "'hopper COMMAND --help').\n"
                             "\n"
                             "Example:\n"
                             "  hopper help declare queue\n";

static const struct {
    const char *topic;
    const char *text[3]; // printed in order; NULL ends
} s_topics[] = {
    {"declare", {s_declare, s_declare_exchange, s_declare_queue}},
    {"declare exchange", {s_declare_exchange, NULL, NULL}},
    {"declare queue", {s_declare_queue, NULL, NULL}},
    {"bind", {s_bind, NULL, NULL}},
    {"unbind", {s_unbind, NULL, NULL}},
    {"publish", {s_publish, NULL, NULL}},
    {"consume", {s_consume, s_delivery_format, NULL}},
    {"subscribe", {s_subscribe, s_delivery_format, NULL}},
    {"get", {s_get, s_delivery_format, NULL}},
    {"list", {s_list, NULL, NULL}},
    {"peek", {s_peek, NULL, NULL}},
    {"move", {s_move, NULL, NULL}},
    {"replay", {s_replay, NULL, NULL}},
    {"trace", {s_trace, NULL, NULL}},
    {"purge", {s_purge, NULL, NULL}},
    {"delete", {s_delete, s_delete_queue, s_delete_exchange}},
    {"delete queue", {s_delete_queue, NULL, NULL}},
    {"delete exchange", {s_delete_exchange, NULL, NULL}},
    {"status", {s_status, NULL, NULL}},
    {"top", {s_top, NULL, NULL}},
    {"help", {s_help, NULL, NULL}},
};

bool
hop_cli_help(const char *topic, FILE *out)
{
    if (!topic) {
        fputs(s_overview, out);
        fputs(s_exit_codes, out);
        return true;
    }
    // "list queues" and "consume jobs" fall back to the command's help.
    for (int pass = 0; pass < 2; pass++) {
        size_t len = strlen(topic);
        if (pass == 1) {
            const char *space = strchr(topic, ' ');
            if (!space)
                return false;
            len = (size_t)(space - topic);
        }
        for (size_t i = 0; i < sizeof s_topics / sizeof s_topics[0]; i++) {
            if (strlen(s_topics[i].topic) != len || strncmp(s_topics[i].topic, topic, len) != 0)
                continue;
            for (int t = 0; t < 3 && s_topics[i].text[t]; t++) {
                if (t > 0 && s_topics[i].text[t] != s_delivery_format)
                    fputs("\n", out);
                fputs(s_topics[i].text[t], out);
            }
            fputs(s_exit_codes, out);
            fputs(s_globals_note, out);
            return true;
        }
    }
    return false;
}
