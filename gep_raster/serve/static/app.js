/* gep serve: map of the runs' rasters, polygon accounts on click, parcel queries (draw or upload).
   Plain JavaScript over the vendored Leaflet (no build step, no external URL). */
(function () {
  "use strict";

  var state = {
    runs: [], run: null, limits: {}, rasterLayers: {}, overlays: {}, layersControl: null, current: null,
    drawing: false, vertices: [], drawLayer: null, parcelLayer: null, lastRequest: null, lastParcel: null,
    lastResult: null
  };
  var $ = function (id) { return document.getElementById(id); };

  var map = L.map("map", { zoomControl: true, preferCanvas: false });
  map.attributionControl.setPrefix("Leaflet");
  map.setView([30, 115], 5);

  // -- helpers ---------------------------------------------------------------------------------------------------
  function fmt(v) {
    if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) { return "\u2013"; }
    if (typeof v !== "number") { return String(v); }
    if (Math.abs(v) >= 1000) { return Math.round(v).toLocaleString("en-US"); }
    if (v === 0) { return "0"; }
    return Number(v.toPrecision(6)).toString();
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function label(key) {
    var names = { gep_r_yuan: "GEP-R", gep_yuan: "GEP", provisioning_yuan: "EPV (provisioning)",
      cultural_yuan: "ECV (cultural)", area_km2: "area", grid_area_km2: "area on the grid",
      valid_area_km2: "area with values" };
    return names[key] || key.replace(/_/g, " ");
  }
  function showMessage(text, kind) {
    var m = $("message");
    m.textContent = text;
    m.className = kind || "error";
    m.hidden = !text;
  }
  function busy(on) { $("busy").hidden = !on; }
  async function getJSON(url) {
    var r = await fetch(url);
    if (!r.ok) { throw new Error((await errorText(r)) || (r.status + " " + r.statusText)); }
    return r.json();
  }
  async function errorText(r) {
    try { var j = await r.json(); return j.detail ? String(j.detail) : JSON.stringify(j); }
    catch (e) { return r.status + " " + r.statusText; }
  }

  // -- runs and layers -------------------------------------------------------------------------------------------
  async function loadRuns() {
    var data = await getJSON("api/runs");
    state.runs = data.runs;
    state.limits = data.limits || {};
    if (state.limits.max_upload_bytes) { $("limit-upload").textContent = fmt(state.limits.max_upload_bytes / 1048576); }
    if (state.limits.max_area_share) { $("limit-area").textContent = fmt(100 * state.limits.max_area_share); }
    var sel = $("run-select");
    sel.innerHTML = "";
    data.runs.forEach(function (r) {
      var o = document.createElement("option");
      o.value = r.id;
      o.textContent = r.name + (r.accounting_year ? " (" + r.accounting_year + ")" : "");
      sel.appendChild(o);
    });
    sel.onchange = function () { selectRun(sel.value); };
    if (data.runs.length) { await selectRun(data.runs[0].id); }
  }

  async function selectRun(id) {
    var run = state.runs.find(function (r) { return r.id === id; });
    if (!run) { return; }
    Object.values(state.rasterLayers).forEach(function (l) { map.removeLayer(l); });
    Object.values(state.overlays).forEach(function (l) { map.removeLayer(l); });
    if (state.layersControl) { map.removeControl(state.layersControl); }
    state.run = run; state.rasterLayers = {}; state.overlays = {}; state.layersReady = false;
    var b = run.bounds_wgs84;
    var bounds = L.latLngBounds([b[1], b[0]], [b[3], b[2]]);
    var sel = $("raster-select");
    sel.innerHTML = "";
    run.rasters.forEach(function (r) {
      state.rasterLayers[r.key] = L.tileLayer("tiles/" + encodeURIComponent(run.id) + "/" + encodeURIComponent(r.key) +
        "/{z}/{x}/{y}.png", { maxZoom: 19, opacity: 0.92, bounds: bounds.pad(0.02),
          attribution: "run " + esc(run.name) + " (gep_raster)" });
      var o = document.createElement("option");
      o.value = r.key;
      o.textContent = label(r.key) + (r.kind === "physical" ? " (" + r.unit + ")" : "");
      o.title = r.description;
      sel.appendChild(o);
    });
    sel.onchange = function () { showRaster(sel.value); };
    $("run-info").textContent = (run.description || "") + " \u2014 " + run.grid.crs + ", " + run.grid.width + " \u00d7 " +
      run.grid.height + " px of " + fmt(run.grid.res[0]) + " m; " + fmt(run.grid.area_km2) + " km\u00b2";
    var key = run.rasters.some(function (r) { return r.key === "gep_r_yuan"; }) ? "gep_r_yuan" : run.rasters[0].key;
    sel.value = key;
    map.fitBounds(bounds);
    showRaster(key);
    var ovl = {};
    for (var i = 0; i < run.layers.length; i++) {
      var lay = run.layers[i];
      try {
        var gj = await getJSON("api/runs/" + encodeURIComponent(run.id) + "/layers/" + encodeURIComponent(lay.name));
        var gl = polygonLayer(gj, i);
        state.overlays[lay.name] = gl;
        ovl[lay.name + " (" + lay.role + ")"] = gl;
        if (i === 0 || lay.role === "special_unit") { gl.addTo(map); }
      } catch (e) { showMessage("layer " + lay.name + ": " + e.message); }
    }
    state.layersControl = L.control.layers(null, ovl, { collapsed: false, position: "topright" }).addTo(map);
    state.layersReady = true;
  }

  var COLORS = ["#222222", "#5d4037", "#455a64", "#6a1b9a"];
  function polygonLayer(gj, i) {
    var units = gj.units || {};
    var special = gj.role === "special_unit";
    return L.geoJSON(gj, {
      style: { color: special ? "#1565c0" : COLORS[i % COLORS.length], weight: special ? 2 : 1.2, fillOpacity: 0,
        dashArray: special ? "4 3" : null },
      onEachFeature: function (f, layer) {
        layer.on("click", function (e) {
          if (state.drawing) { return; }
          L.popup({ maxWidth: 380 }).setLatLng(e.latlng).setContent(accountPopup(gj, f.properties, units)).openOn(map);
        });
      }
    });
  }
  function accountPopup(gj, p, units) {
    var rows = ["<b>" + esc(gj.layer) + " " + esc(p[gj.id_field]) + "</b> " + esc(p[gj.name_field] || ""),
      '<table class="popup-table">'];
    Object.keys(p).forEach(function (k) {
      if (k === gj.id_field || k === gj.name_field) { return; }
      rows.push("<tr><td>" + esc(label(k)) + '</td><td class="num">' + esc(fmt(p[k])) + "</td><td>" +
        esc(units[k] || "") + "</td></tr>");
    });
    rows.push("</table>");
    return rows.join("");
  }

  // -- raster and legend -----------------------------------------------------------------------------------------
  var legend = L.control({ position: "bottomleft" });
  legend.onAdd = function () { this._div = L.DomUtil.create("div", "legend"); this._div.id = "legend"; return this._div; };
  legend.addTo(map);

  async function showRaster(key) {
    if (state.current) { map.removeLayer(state.current); }
    state.current = state.rasterLayers[key];
    state.current.addTo(map);
    state.current.bringToBack();
    var r = state.run.rasters.find(function (x) { return x.key === key; });
    try {
      var lg = await getJSON("api/runs/" + encodeURIComponent(state.run.id) + "/rasters/" + encodeURIComponent(key) + "/legend");
      legend._div.innerHTML = "<b>" + esc(label(key)) + "</b> <span>" + esc(lg.unit) + "</span>" +
        '<div class="bar" style="background: linear-gradient(to right, ' + lg.colors.join(", ") + ')"></div>' +
        '<div class="ticks"><span>' + esc(fmt(lg.min)) + "</span><span>" + esc(fmt(lg.max)) + "</span></div>" +
        '<div class="small">' + esc(r.description) + "; colours from the 2nd to the 98th percentile, " +
        "transparent = no data</div>";
    } catch (e) { legend._div.textContent = "legend: " + e.message; }
  }

  // -- drawing a parcel ------------------------------------------------------------------------------------------
  function startDraw() {
    cancelDraw();
    state.drawing = true;
    state.vertices = [];
    state.drawLayer = L.layerGroup().addTo(map);
    map.doubleClickZoom.disable();
    map.closePopup();
    $("map").classList.add("drawing");
    $("draw-finish").disabled = false;
    $("draw-cancel").disabled = false;
    $("draw-start").disabled = true;
    showMessage("");
  }
  function redraw() {
    state.drawLayer.clearLayers();
    if (state.vertices.length > 1) {
      L.polyline(state.vertices.concat(state.vertices.length > 2 ? [state.vertices[0]] : []),
        { color: "#d32f2f", weight: 2, dashArray: "5 4", interactive: false }).addTo(state.drawLayer);
    }
    state.vertices.forEach(function (v) {
      L.circleMarker(v, { radius: 4, color: "#d32f2f", fillOpacity: 1, interactive: false }).addTo(state.drawLayer);
    });
  }
  function cancelDraw() {
    state.drawing = false;
    if (state.drawLayer) { map.removeLayer(state.drawLayer); state.drawLayer = null; }
    map.doubleClickZoom.enable();
    $("map").classList.remove("drawing");
    $("draw-finish").disabled = true;
    $("draw-cancel").disabled = true;
    $("draw-start").disabled = false;
  }
  function finishDraw() {
    var pts = [];
    state.vertices.forEach(function (v) {
      var last = pts[pts.length - 1];
      if (!last || last.lat !== v.lat || last.lng !== v.lng) { pts.push(v); }
    });
    if (pts.length < 3) { showMessage("a parcel needs at least 3 vertices: click the map to add them"); return; }
    var ring = pts.map(function (v) { return [v.lng, v.lat]; });
    ring.push(ring[0].slice());
    cancelDraw();
    var geometry = { type: "Polygon", coordinates: [ring] };
    queryGeometry(geometry);
  }
  map.on("click", function (e) {
    if (!state.drawing) { return; }
    state.vertices.push(e.latlng);
    redraw();
  });
  map.on("dblclick", function () { if (state.drawing) { finishDraw(); } });
  $("draw-start").onclick = startDraw;
  $("draw-finish").onclick = finishDraw;
  $("draw-cancel").onclick = cancelDraw;

  // -- parcel queries --------------------------------------------------------------------------------------------
  function queryGeometry(geometry) {
    state.lastParcel = geometry;
    var body = { run: state.run.id, geometry: geometry, make_valid: $("make-valid").checked };
    state.lastRequest = function (format) {
      return fetch("api/parcel" + (format ? "?format=" + format : ""), {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    };
    return runQuery();
  }
  function queryFile(file) {
    var makeValid = $("make-valid").checked;
    state.lastParcel = null;
    state.lastRequest = function (format) {
      var fd = new FormData();
      fd.append("run", state.run.id);
      fd.append("make_valid", makeValid ? "true" : "false");
      fd.append("file", file, file.name);
      return fetch("api/parcel" + (format ? "?format=" + format : ""), { method: "POST", body: fd });
    };
    return runQuery();
  }
  async function runQuery() {
    showMessage("");
    $("result").hidden = true;
    busy(true);
    try {
      var r = await state.lastRequest(null);
      if (!r.ok) { showMessage(await errorText(r)); return; }
      var acc = await r.json();
      state.lastResult = acc;
      if (!state.lastParcel) { state.lastParcel = acc.geometry; }
      showParcel(acc);
      showResult(acc);
    } catch (e) {
      showMessage("request failed: " + e.message);
    } finally { busy(false); }
  }
  function showParcel(acc) {
    if (state.parcelLayer) { map.removeLayer(state.parcelLayer); }
    state.parcelLayer = L.geoJSON(acc.geometry, { style: { color: "#ff3d00", weight: 3, fillOpacity: 0.15 },
      interactive: false }).addTo(map);
  }
  function showResult(acc) {
    var tb = $("result-table").tBodies[0];
    var units = acc.units || {};
    var html = [];
    function head(text) { html.push('<tr class="head"><td colspan="3">' + esc(text) + "</td></tr>"); }
    function row(key, value, unit, cls, id) {
      html.push('<tr class="' + (cls || "") + '"><td>' + esc(label(key)) + '</td><td class="num"' +
        (id ? ' id="' + id + '"' : "") + ' data-key="' + esc(key) + '" data-value="' +
        (value === null || value === undefined ? "" : String(value)) + '">' + esc(fmt(value)) + '</td><td class="unit">' +
        esc(unit || "") + "</td></tr>");
    }
    head("Parcel on run " + acc.run.name + (acc.run.accounting_year ? " (" + acc.run.accounting_year + ")" : ""));
    row("area_km2", acc.parcel.area_km2, "km\u00b2", "", "result-area");
    row("valid_area_km2", acc.parcel.valid_area_km2, "km\u00b2");
    head("Value");
    row("gep_r_yuan", acc.totals.gep_r_yuan, "yuan/a", "total", "result-gep-r");
    if (acc.totals.gep_yuan !== null) {
      row("provisioning_yuan", acc.totals.epv_yuan, "yuan/a", "", "result-epv");
      row("cultural_yuan", acc.totals.ecv_yuan, "yuan/a", "", "result-ecv");
      row("gep_yuan", acc.totals.gep_yuan, "yuan/a", "total", "result-gep");
    }
    head("Services: value and physical quantity");
    acc.services.forEach(function (s) {
      row(s.service, s.value_yuan, "yuan/a", "total");
      Object.keys(s.physical).forEach(function (k) { row(k, s.physical[k], units[k] || ""); });
    });
    tb.innerHTML = html.join("");
    var wl = $("result-warnings");
    wl.innerHTML = "";
    (acc.warnings || []).forEach(function (w) { var li = document.createElement("li"); li.textContent = w; wl.appendChild(li); });
    $("result").hidden = false;
  }
  async function download(format) {
    if (!state.lastRequest) { return; }
    var r = await state.lastRequest(format);
    if (!r.ok) { showMessage(await errorText(r)); return; }
    var blob = await r.blob();
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "parcel_" + state.run.id + (format === "csv" ? ".csv" : ".geojson");
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  $("download-csv").onclick = function () { download("csv"); };
  $("download-geojson").onclick = function () { download("geojson"); };
  $("parcel-file").onchange = function (e) {
    var f = e.target.files && e.target.files[0];
    if (f) { queryFile(f); }
    e.target.value = "";
  };

  window.gepApp = { map: map, state: state, queryGeometry: queryGeometry, ready: loadRuns().catch(function (e) {
    showMessage("cannot load the runs: " + e.message);
  }) };
})();
