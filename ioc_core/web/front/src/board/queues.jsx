// The queue tiles: what is waiting now and how today went, per queue, each figure against its
// threshold (tone colour plus a word).
import { formatDuration, t } from "../lib/i18n.js";
import { abandonTone, levelTone, longestWait, serviceLevel, waitTone } from "./figures.js";

function Tone({ tone, id }) {
  // "No calls yet" needs no pill: the figure itself is a dash.
  if (tone === "idle") return null;
  return (
    <span class={`tone ${tone}`} data-testid={id} data-tone={tone}>
      {t(`board.tone.${tone}`)}
    </span>
  );
}

function percent(ratio) {
  return ratio == null ? "–" : `${Math.round(ratio * 100)} %`;
}

function Level({ q, seconds }) {
  const sl = serviceLevel(q, seconds);
  const tone = levelTone(sl.ratio, seconds);
  const id = `queue-${q.queue}-answered-${seconds}`;
  return (
    <div class={`cell ${tone}`} title={t("board.queues.within_long", { seconds })}>
      <span class="cap">{t("board.queues.within", { seconds })}</span>
      <span
        class="num"
        data-testid={id}
        data-count={sl.within}
        data-answered={sl.answered}
        data-percent={sl.ratio == null ? "" : Math.round(sl.ratio * 100)}
      >
        {percent(sl.ratio)}
      </span>
      <span class="sub">{t("board.queues.of_answered", { within: sl.within, answered: sl.answered })}</span>
      <Tone tone={tone} id={`${id}-tone`} />
    </div>
  );
}

export function QueueTile({ q, waiting, now }) {
  const longest = q.waiting ? longestWait(waiting, now) : 0;
  const wt = q.waiting ? waitTone(longest, q.queue) : "idle";
  const at = abandonTone(q);
  const id = `queue-${q.queue}`;
  const name = t(`board.queue_names.${q.queue}`);
  return (
    <section class={`tile ${wt === "idle" ? "ok" : wt}`} data-testid={id} aria-label={name}>
      <header>
        <h2>{name}</h2>
        <span class="ready" data-testid={`${id}-ready`}>
          {t("board.queues.agents_ready", { n: (q.agents && q.agents.available) || 0 })}
        </span>
      </header>
      <div class="cells">
        <div class={`cell big ${wt}`}>
          <span class="cap">{t("board.queues.waiting")}</span>
          <span class="num" data-testid={`${id}-waiting`}>{q.waiting}</span>
        </div>
        <div class={`cell big ${wt}`}>
          <span class="cap">{t("board.queues.longest_wait")}</span>
          <span class="num" data-testid={`${id}-longest-wait`} data-seconds={Math.floor(longest)}>
            {formatDuration(longest)}
          </span>
          <Tone tone={wt} id={`${id}-wait-tone`} />
        </div>
        <Level q={q} seconds={15} />
        <Level q={q} seconds={20} />
        <div class={`cell ${at}`}>
          <span class="cap">{t("board.queues.abandoned")}</span>
          <span class="num" data-testid={`${id}-abandoned`}>{q.abandoned}</span>
          <span class="sub">{t("board.queues.answered", { n: q.answered })}</span>
          <Tone tone={at} id={`${id}-abandoned-tone`} />
        </div>
        <div class="cell" title={t("board.queues.asa_long")}>
          <span class="cap">{t("board.queues.asa")}</span>
          <span class="num" data-testid={`${id}-asa`}>{q.asa_s == null ? "–" : formatDuration(q.asa_s)}</span>
        </div>
      </div>
    </section>
  );
}

export function HandoffTile({ handoffs, error }) {
  const items = (handoffs && handoffs.items) || [];
  const waiting = items.filter((h) => h.status === "waiting");
  const urgent = waiting.filter((h) => h.urgent).length;
  const tone = urgent ? "bad" : waiting.length ? "warn" : "ok";
  return (
    <section class={`tile small ${tone}`} data-testid="handoffs">
      <header>
        <h2>{t("board.handoffs.title")}</h2>
      </header>
      {error ? (
        <p class="muted">{t("board.unavailable")}</p>
      ) : (
        <div class="cells">
          <div class={`cell big ${tone}`}>
            <span class="cap">{t("board.handoffs.waiting")}</span>
            <span class="num" data-testid="handoffs-waiting">{waiting.length}</span>
            <span class="sub">{t("board.handoffs.urgent", { n: urgent })}</span>
          </div>
          <div class="cell">
            <span class="cap">{t("board.handoffs.active")}</span>
            <span class="num" data-testid="handoffs-active">{items.filter((h) => h.status === "active").length}</span>
          </div>
        </div>
      )}
    </section>
  );
}
