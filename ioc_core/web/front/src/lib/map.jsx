// One Leaflet map for every screen (board: today's incidents; console: pick a place). It must
// stay readable with no tile server at all (an IOC on a closed network): without a tile URL
// the markers sit on a plain grid, and each screen lists the same places as text next to it.
import L from "leaflet";
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "./api.js";

let configPromise = null;

// GET /api/v1/screens/config once per page: {map: {tiles, center: [lat, lon], zoom}}.
export function loadScreensConfig() {
  configPromise ||= api("GET", "/api/v1/screens/config").catch((err) => {
    configPromise = null; // try again next time
    throw err;
  });
  return configPromise;
}

export function useMapConfig() {
  const [config, setConfig] = useState(null);
  useEffect(() => {
    loadScreensConfig().then(
      (c) => setConfig(c.map),
      () => setConfig({ tiles: "", center: [11.5349, 106.8832], zoom: 12 }),
    );
  }, []);
  return config;
}

const TONES = { bad: "#b42318", warn: "#9a6700", info: "#0b6bcb", ok: "#1a7f37", idle: "#6e7781" };

// places: [{id, lat, lon, label, tone}] (tone: bad | warn | info | ok | idle).
// onPick({lat, lon}): the user clicked the map (the console's location picker); `picked`
// shows the chosen point. `label` names the map for screen readers.
export function PlaceMap({ places = [], config, onPick, picked, label, testid = "map", class: cls = "" }) {
  const box = useRef(null);
  const map = useRef(null);
  const layer = useRef(null);
  const pickedMarker = useRef(null);

  useEffect(() => {
    if (!config || !box.current) return undefined;
    const m = L.map(box.current, { zoomControl: true, attributionControl: Boolean(config.tiles) });
    m.setView(config.center, config.zoom || 12);
    if (config.tiles) L.tileLayer(config.tiles, { maxZoom: 19 }).addTo(m);
    layer.current = L.layerGroup().addTo(m);
    map.current = m;
    // The board resizes with the wall screen: Leaflet must be told its box changed.
    const watch = new ResizeObserver(() => m.invalidateSize());
    watch.observe(box.current);
    return () => {
      watch.disconnect();
      m.remove();
      map.current = null;
    };
  }, [config]);

  useEffect(() => {
    const m = map.current;
    if (!m || !onPick) return undefined;
    const click = (e) => onPick({ lat: e.latlng.lat, lon: e.latlng.lng });
    m.on("click", click);
    return () => m.off("click", click);
  }, [config, onPick]);

  const located = places.filter((p) => Number.isFinite(p.lat) && Number.isFinite(p.lon));
  const key = located.map((p) => `${p.id}:${p.lat}:${p.lon}:${p.tone}:${p.label}`).join("|");
  useEffect(() => {
    const m = map.current;
    if (!m) return;
    layer.current.clearLayers();
    for (const p of located) {
      const colour = TONES[p.tone] || TONES.info;
      L.circleMarker([p.lat, p.lon], {
        radius: 9,
        color: "#fff",
        weight: 2,
        fillColor: colour,
        fillOpacity: 0.95,
      })
        .bindTooltip(p.label || String(p.id), {
          permanent: located.length <= 15,
          direction: "top",
          offset: [0, -8],
          className: "map-label",
        })
        .addTo(layer.current);
    }
    if (located.length) {
      m.fitBounds(L.latLngBounds(located.map((p) => [p.lat, p.lon])), { padding: [30, 30], maxZoom: 14 });
    }
  }, [config, key]);

  useEffect(() => {
    const m = map.current;
    if (!m) return;
    if (pickedMarker.current) pickedMarker.current.remove();
    pickedMarker.current = picked
      ? L.circleMarker([picked.lat, picked.lon], { radius: 11, color: "#12324f", weight: 3, fillOpacity: 0.2 }).addTo(m)
      : null;
  }, [config, picked && picked.lat, picked && picked.lon]);

  return (
    <div
      ref={box}
      class={`map ${config && config.tiles ? "" : "no-tiles"} ${cls}`}
      role="region"
      aria-label={label}
      data-testid={testid}
      data-markers={located.length}
    />
  );
}
