"use strict";
// Redraws the server-rendered table from /api/v1/proposals every poll interval. It builds the
// same markup as page.rs, with textContent and attributes only, so that no value from Redis is
// parsed as HTML.
(() => {
  const cfg = JSON.parse(document.getElementById("config").textContent);
  const $ = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const killBand = (k) => (k >= cfg.kill_critical ? "k-crit" : k >= cfg.kill_high ? "k-high" : "k-low");
  const rNetBand = (r) => (r >= cfg.r_net_good ? "r-good" : r >= cfg.r_net_fair ? "r-fair" : "r-poor");
  const pad = (n) => String(n).padStart(2, "0");
  const age = (seconds) => {
    if (seconds === null) return "unknown";
    const s = Math.floor(Math.max(seconds, 0));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  };
  const cacheAge = (s) => (s === null ? "never" : s < 60 ? s.toFixed(1) + "s" : age(s));
  const shares = (p) => {
    const raw = cfg.components.map((c) => (Math.min(Math.max(p[c.key], 0), c.max) * c.weight * 100) / cfg.bar_full);
    const total = raw.reduce((sum, share) => sum + share, 0);
    return total > 100 ? raw.map((share) => (share * 100) / total) : raw;
  };

  // Everything but ASCII letters, digits and -_.~ escaped, as page.rs writes the link.
  const symbolHref = (symbol) =>
    "/symbol/" +
    encodeURIComponent(symbol).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  const sparkY = (v) => {
    const { height, pad } = cfg.spark;
    const clamped = Number.isNaN(v) ? 0 : Math.min(Math.max(v, 0), 1);
    return (pad + (1 - clamped) * (height - 2 * pad)).toFixed(1);
  };
  // A copy of the page's template, whose threshold lines page.rs has drawn.
  const sparkline = (trend, band) => {
    const values = trend.length === 1 ? [trend[0], trend[0]] : trend;
    const step = cfg.spark.width / (values.length - 1);
    const svg = $("spark").content.firstElementChild.cloneNode(true);
    const line = svg.querySelector("polyline");
    line.setAttribute("class", band);
    line.setAttribute("points", values.map((v, i) => (i * step).toFixed(1) + "," + sparkY(v)).join(" "));
    return svg;
  };

  const row = (p) => {
    const tr = el("tr", p.stale ? "stale" : "");
    tr.dataset.symbol = p.symbol;
    const cell = (className, label) => {
      const td = el("td", className);
      td.dataset.label = label;
      tr.append(td);
      return td;
    };
    const sym = cell("sym", "Symbol");
    const name = el("a", "name", p.symbol);
    name.href = symbolHref(p.symbol);
    sym.append(name);
    if (p.position_side !== null) sym.append(" ", el("small", "side", p.position_side));
    const kill = cell("kill", "Kill score");
    kill.append(el("span", "pill " + killBand(p.kill_score), p.kill_score.toFixed(3)));
    if (p.kill_score_trend.length > 0) kill.append(sparkline(p.kill_score_trend, killBand(p.kill_score)));
    const bar = el("div", "bar");
    bar.title = cfg.components.map((c) => c.label + " " + p[c.key] + " \u00d7" + c.weight).join(", ");
    shares(p).forEach((share, i) => {
      const part = el("i", "c" + i);
      part.style.width = share.toFixed(1) + "%";
      bar.append(part);
    });
    const parts = cfg.components.map((c) => p[c.key].toFixed(2)).join(" \u00b7 ");
    cell("comp", "Components").append(bar, el("small", "parts", parts));
    cell("rnet", "R_net").append(el("span", "pill " + rNetBand(p.r_net), p.r_net.toFixed(2)));
    cell("sl", "New SL").textContent = p.new_sl === null ? "" : String(p.new_sl);
    const act = cell("act", "Action");
    act.textContent = p.action === null ? "\u2014" : p.action;
    if (p.reason_codes) act.title = p.reason_codes;
    if (p.calibrated_action !== null && p.calibrated_action === p.action) {
      act.append(el("small", "cal", "calibrated"));
    } else if (p.calibrated_action !== null) {
      act.append(el("small", "cal", "\u2192 " + p.calibrated_action + " (calibrated)"));
    }
    if (p.plan_decision || p.result_outcome) {
      let note = "plan " + (p.plan_decision || "\u2014") + " \u00b7 " +
        (p.result_outcome ? p.result_outcome.replace(/_/g, " ") : "no result yet");
      const n = p.result_repeats || 0;
      if (n > 0) note += " \u00b7 " + n + (n === 1 ? " repeat" : " repeats");
      act.append(el("small", "apply", note));
    }
    const ageCell = cell("age", "Data age");
    ageCell.textContent = age(p.age_seconds);
    if (p.stale) ageCell.append(el("b", "tag", "stale"));
    return tr;
  };

  const render = (view) => {
    const redis = $("redis");
    redis.className = view.redis_up ? "up" : "down";
    redis.textContent = view.redis_up
      ? "Redis up"
      : "Redis down" + (view.redis_error === null ? "" : ": " + view.redis_error);
    $("cache").textContent = cacheAge(view.cache_age_seconds);
    const n = view.proposals.length;
    $("count").textContent = n + (n === 1 ? " symbol" : " symbols");
    $("version").textContent = "harvest-exporter " + view.version;
    const missing = $("missing");
    missing.hidden = view.missing.length === 0;
    missing.textContent = "No proposal for configured symbols: " + view.missing.join(", ");
    const rows = view.proposals.map(row);
    if (rows.length === 0) {
      const none = el("tr", "none");
      const td = el("td", "", "No proposals to show.");
      td.colSpan = 7;
      none.append(td);
      rows.push(none);
    }
    $("rows").replaceChildren(...rows);
    const following = $("following");
    if (view.apply && following) {
      following.className = view.apply.following ? "up" : "down";
      following.textContent = view.apply.following
        ? "following the apply streams"
        : "not reading the apply streams (Redis unreachable?); the values shown are the last ones read";
      const items = view.apply.recent.map((r) => {
        const li = el("li");
        const time = new Date(r.at * 1000).toISOString().slice(11, 19);
        li.append(el("time", "", time), " ", el("b", "", r.stream), " ", el("span", "name", r.symbol), " ",
          el("span", "what", r.what), " ", el("small", "", r.detail));
        return li;
      });
      if (items.length === 0) items.push(el("li", "none", "No plans or results yet."));
      $("recent").replaceChildren(...items);
    }
  };

  const live = $("live");
  let polls = 0;
  const poll = async () => {
    try {
      const response = await fetch("/api/v1/proposals", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      polls += 1;
      live.dataset.polls = String(polls);
      live.className = "";
      live.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      live.className = "down";
      live.textContent = "not updating: " + error.message;
    } finally {
      setTimeout(poll, cfg.poll_ms);
    }
  };
  setTimeout(poll, cfg.poll_ms);
})();
