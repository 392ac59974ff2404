// Today's incidents: on the map (readable without tiles) and the same places as a list.
import { lang, formatTime, t } from "../lib/i18n.js";
import { PlaceMap, useMapConfig } from "../lib/map.jsx";
import { incidentTone } from "./figures.js";

export function IncidentsPanel({ incidents, error }) {
  const config = useMapConfig();
  // A duplicate merged into another and an abandoned draft are not incidents of their own.
  const items = (incidents || []).filter((i) => i.state !== "merged" && i.state !== "cancelled");
  const places = items
    .filter((i) => i.location && i.location.lat != null && i.location.lon != null)
    .map((i) => ({ id: i.code, lat: i.location.lat, lon: i.location.lon, label: i.code, tone: incidentTone(i) }));
  return (
    <section class="panel incidents" data-testid="incidents" aria-labelledby="incidents-h">
      <h2 id="incidents-h">
        {t("board.incidents.title")} <span class="count" data-testid="incidents-count">{items.length}</span>
      </h2>
      {error && <p class="error small">{t("board.unavailable")}</p>}
      <PlaceMap places={places} config={config} label={t("board.incidents.map")} testid="incidents-map" />
      {config && !config.tiles && <p class="muted small">{t("board.incidents.no_tiles")}</p>}
      {items.length === 0 ? (
        <p class="muted">{t("board.incidents.none")}</p>
      ) : (
        <ul class="plain list">
          {items.map((i) => {
            const tone = incidentTone(i);
            return (
              <li key={i.id} data-testid={`incident-${i.code}`} class={`inc ${tone}`}>
                <span class={`tone ${tone}`}>{t(`board.incidents.tone.${tone}`)}</span>{" "}
                <strong>{i.code}</strong> {i.title}
                <div class="muted small">
                  {formatTime(i.created_at)} · {(i.state_label && i.state_label[lang()]) || i.state} ·{" "}
                  {i.agency ? t("board.incidents.agency", { agency: i.agency }) : t("board.incidents.no_agency")}
                  {i.location && i.location.address ? ` · ${i.location.address}` : ""}
                  {i.location && i.location.lat == null ? ` · ${t("board.incidents.no_place")}` : ""}
                </div>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
