// A pick on the map for the incident's place. Leaflet from npm; tiles only when the hub is
// configured with a tile server (IOC_MAP_TILES), else a plain grid: still usable to pick a
// point near the province's centre, and the coordinates are shown as text.
import { useEffect, useRef } from "preact/hooks";
import L from "leaflet";
import { t } from "../lib/i18n.js";

export function LocationMap({ config, lat, lon, onPick }) {
  const el = useRef(null);
  const map = useRef(null);
  const marker = useRef(null);
  const pick = useRef(onPick);
  pick.current = onPick;
  const tiles = config && config.map && config.map.tiles;

  useEffect(() => {
    if (!config || !el.current || map.current) return undefined;
    const centre = (config.map && config.map.center) || [12.68, 108.04];
    const m = L.map(el.current, { zoomControl: true, attributionControl: !!tiles }).setView(
      lat != null ? [lat, lon] : centre,
      (config.map && config.map.zoom) || 12,
    );
    if (tiles) L.tileLayer(tiles, { maxZoom: 19 }).addTo(m);
    m.on("click", (e) => pick.current(round(e.latlng.lat), round(e.latlng.lng)));
    map.current = m;
    return () => {
      m.remove();
      map.current = null;
      marker.current = null;
    };
  }, [config]);

  useEffect(() => {
    const m = map.current;
    if (!m) return;
    if (lat == null) {
      if (marker.current) marker.current.remove();
      marker.current = null;
      return;
    }
    // A circle marker: no image to load, drawn even with no tiles.
    if (!marker.current) marker.current = L.circleMarker([lat, lon], { radius: 9, color: "#b42318" }).addTo(m);
    else marker.current.setLatLng([lat, lon]);
  }, [lat, lon, map.current]);

  return (
    <div>
      <div ref={el} class={`map pick ${tiles ? "" : "no-tiles"}`} data-testid="incident-map"
        aria-label={t("console.form.map_hint")} />
      <p class="muted small" data-testid="incident-point">
        {lat != null ? `${lat.toFixed(5)}, ${lon.toFixed(5)}` : t("console.form.map_hint")}
      </p>
    </div>
  );
}

function round(x) {
  return Math.round(x * 1e6) / 1e6;
}
