// The report's place picked on the shared map (src/lib/map.jsx: no tile server needed); the
// coordinates are also shown as text.
import { PlaceMap } from "../lib/map.jsx";
import { t } from "../lib/i18n.js";

export function LocationMap({ config, lat, lon, onPick }) {
  return (
    <div>
      <PlaceMap
        config={config && config.map}
        picked={lat != null ? { lat, lon } : null}
        onPick={(p) => onPick(round(p.lat), round(p.lon))}
        label={t("console.form.map_hint")}
        testid="incident-map"
        class="pick"
      />
      <p class="muted small" data-testid="incident-point">
        {lat != null ? `${lat.toFixed(5)}, ${lon.toFixed(5)}` : t("console.form.map_hint")}
      </p>
    </div>
  );
}

function round(x) {
  return Math.round(x * 1e6) / 1e6;
}
