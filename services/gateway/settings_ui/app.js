// The bridge's settings window (shown in Kommo as the Messenger Bridge widget's): plain DOM, no framework, no build step, nothing from other origins.
//
// Opened from the Kommo widget as /settings/#ticket=…[&lang=es]. The ticket is single use: it is
// taken off the address bar at once and traded (POST api/enter) for an HttpOnly session cookie,
// which every later call carries. Inside Kommo's iframe a browser may refuse that cookie as a
// third-party one (Safari; Chrome with third-party cookies blocked): the session that api/enter also
// returns is then kept in memory only (never in storage) and sent as the X-Bridge-Session header.
// Everything the admin sees comes from GET api/overview; what the platforms say about each channel
// (GET api/health: webhook, pending updates, last error, token) follows it, after the first view, since
// it waits on the platforms. Every API error carries a stable `code`, shown in the admin's language.

const VERSION = new URL(import.meta.url).searchParams.get("v") || "";
const LANGUAGES = ["en", "es", "pt"];
const REFRESH_MS = 30000;
// A platform's last delivery error is news for this long (Telegram keeps reporting the last one).
const RECENT_ERROR_MS = 3600000;
const TOKEN_SHAPE = /^\d{3,}:[A-Za-z0-9_-]{20,}$/;
const TOKEN_IN_TEXT = /\d{3,}:[A-Za-z0-9_-]{20,}/;

const state = {
  lang: "en",
  messages: {},
  overview: null,
  // Channel id -> what its platform says (api/health); null until the first answer.
  health: null,
  cards: new Map(),
  view: null,
  refreshTimer: 0,
  session: "",
};

// --- i18n -----------------------------------------------------------------------------------------

function pickLanguage(wanted) {
  const candidates = [wanted, ...(navigator.languages || []), navigator.language];
  for (const candidate of candidates) {
    const code = String(candidate || "").slice(0, 2).toLowerCase();
    if (LANGUAGES.includes(code)) return code;
  }
  return "en";
}

async function loadMessages(lang) {
  try {
    const response = await fetch(`static/i18n/${lang}.json?v=${VERSION}`);
    if (response.ok) return [lang, await response.json()];
  } catch {
    // fall through to English
  }
  if (lang !== "en") return loadMessages("en");
  return ["en", {}];
}

function t(key, vars) {
  let text = state.messages[key];
  if (text === undefined) text = key;
  if (vars) text = text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
  return text;
}

function tn(key, count, vars) {
  const rule = new Intl.PluralRules(state.lang).select(count);
  const specific = `${key}.${rule}`;
  return t(specific in state.messages ? specific : `${key}.other`, { count: formatNumber(count), ...vars });
}

function formatNumber(value) {
  return new Intl.NumberFormat(state.lang).format(value);
}

function formatDate(ms) {
  return new Intl.DateTimeFormat(state.lang, { dateStyle: "medium" }).format(new Date(ms));
}

function formatDateTime(ms) {
  return new Intl.DateTimeFormat(state.lang, { dateStyle: "medium", timeStyle: "short" }).format(new Date(ms));
}

function timeAgo(ms) {
  const seconds = Math.round((ms - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(state.lang, { numeric: "auto" });
  const steps = [
    [60, "second"],
    [3600, "minute", 60],
    [86400, "hour", 3600],
    [604800, "day", 86400],
  ];
  const abs = Math.abs(seconds);
  if (abs < 45) return t("time.justNow");
  for (const [limit, unit, size] of steps) {
    if (abs < limit && size) return rtf.format(Math.round(seconds / size), unit);
  }
  return formatDate(ms);
}

// --- DOM helpers ----------------------------------------------------------------------------------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  check: "M20 6 9 17l-5-5",
  plus: "M12 5v14M5 12h14",
  close: "M18 6 6 18M6 6l12 12",
  chevron: "m6 9 6 6 6-6",
  refresh: "M20.5 12a8.5 8.5 0 1 1-2.5-6M20.5 3.5V9H15",
  trash: "M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6M10 11v5M14 11v5",
  alert: "M12 9v4M12 17h.01M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z",
  info: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zM12 16v-4M12 8h.01",
  lock: "M6 11V8a6 6 0 0 1 12 0v3M4 11h16v10H4zM12 15v2",
  message: "M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z",
  external: "M15 3h6v6M10 14 21 3M18 13v6a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h6",
  plug: "M9 2v6M15 2v6M6 8h12v4a6 6 0 0 1-12 0zM12 18v4",
  key: "M15.5 7.5 19 4M21 2l-2 2 3 3-3 3-3-3M11.4 12.6a5 5 0 1 1-7.1 7.1 5 5 0 0 1 7.1-7.1z",
  wifiOff: "M2 2l20 20M8.5 16.4a5 5 0 0 1 7 0M5 12.9a10 10 0 0 1 5.2-2.8M19 12.9a10 10 0 0 0-2-1.5M12 20h.01",
  shield: "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10zM9 12l2 2 4-4",
  pause: "M9 5v14M15 5v14",
  play: "M7 4.5v15l12-7.5z",
};
const TELEGRAM =
  "M20.7 3.6 2.9 10.5c-1.2.5-1.2 1.2-.2 1.5l4.6 1.4 1.7 5.4c.2.6.1.8.8.8.5 0 .7-.2 1-.5l2.2-2.2 4.7 3.5c.9.5 1.5.2 1.7-.8l3.1-14.6c.3-1.3-.5-1.9-1.4-1.4zM8.4 13.2l9.2-5.8c.5-.3.8-.1.4.2l-7.6 6.9-.3 3.2z";

function icon(name, extra = "") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", `icon ${extra}`.trim());
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

// A speech bubble with a handset cut out: drawn for this window, standing for WhatsApp.
const WHATSAPP =
  "M12 2.2a9.8 9.8 0 0 0-8.5 14.7L2.2 21.8l5-1.3A9.8 9.8 0 1 0 12 2.2zM8.7 7.1c.3-.3.7-.3 1 0l1.3 1.6c.2.3.2.7 0 1l-.7.8c.6 1.3 1.6 2.3 2.9 2.9l.8-.7c.3-.2.7-.2 1 0l1.6 1.3c.3.3.3.7 0 1l-.9.9c-.6.6-1.5.8-2.3.5-2.5-1-4.5-3-5.5-5.5-.3-.8-.1-1.7.5-2.3z";
const PLATFORM_LOGOS = { telegram: TELEGRAM, whatsapp: WHATSAPP };

// The round logo of a channel's platform (Telegram's when the platform is unknown to this window).
function platformLogo(platform) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", PLATFORM_LOGOS[platform] || TELEGRAM);
  path.setAttribute("fill-rule", "evenodd");
  svg.append(path);
  return h("span", { class: `platform-logo is-${PLATFORM_LOGOS[platform] ? platform : "telegram"}` }, svg);
}

function spinner() {
  return h("span", { class: "spinner", "aria-hidden": "true" });
}

let uid = 0;
function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

function setBusy(button, busy, busyLabel) {
  button.disabled = busy;
  button.classList.toggle("is-busy", busy);
  button.setAttribute("aria-busy", busy ? "true" : "false");
  const label = button.querySelector(".btn-label");
  if (!label) return;
  if (busy) {
    button.dataset.idle = label.textContent;
    label.textContent = busyLabel;
  } else if (button.dataset.idle) {
    label.textContent = button.dataset.idle;
  }
}

function toast(message, level) {
  const region = document.getElementById("toasts");
  const item = h("div", { class: `toast${level === "error" ? " is-error" : ""}` }, icon(level === "error" ? "alert" : "check"), h("span", { text: message }));
  region.append(item);
  setTimeout(() => item.remove(), 5000);
}

// --- API ------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || "";
  }
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
  if (state.session) init.headers["X-Bridge-Session"] = state.session;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`api/${path}`, init);
  } catch {
    throw new ApiError(0, "");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok || !data || data.ok === false) {
    throw new ApiError(response.status, (data && data.error) || "", (data && data.code) || "");
  }
  return data;
}

function isSessionError(error) {
  return error instanceof ApiError && (error.status === 401 || error.status === 403);
}

// An API error's code has its text in the admin's language. Without one, the API's sentence (English)
// follows a headline in the admin's language.
function serverError(error, headlineKey, vars) {
  const text = errorText(error, vars);
  if (codeText(error, vars) || !(error instanceof ApiError) || error.status !== 400 || !error.message || state.lang === "en") {
    return [text];
  }
  return [t(headlineKey), text];
}

function codeText(error, vars) {
  if (!(error instanceof ApiError) || !error.code) return "";
  const key = `code.${error.code}`;
  return key in state.messages ? t(key, vars) : "";
}

function errorLines(lines) {
  const [first, second] = lines;
  return h("span", {}, second ? h("strong", { class: "error-headline", text: first }) : first, second ? h("span", { class: "error-detail", text: second }) : null);
}

function errorText(error, vars) {
  if (!(error instanceof ApiError) || error.status === 0) return t("error.network");
  const known = codeText(error, vars);
  if (known) return known;
  if (error.status >= 500) return t("error.busy");
  return error.message || t("error.generic");
}

// --- health ---------------------------------------------------------------------------------------

function platformHealth(channel) {
  return (state.health && state.health[channel.id]) || null;
}

// The channel's state as the admin should see it, most urgent first; `fix` names the action that mends it.
function channelHealth(channel) {
  if (channel.state === "disconnected") return { level: "off", label: t("health.disconnected") };
  const platform = platformHealth(channel);
  const name = platformLabel(channel);
  if (platform && platform.token_rejected) {
    const detail = channel.platform === "whatsapp" ? t("waFix.rejectedDetail") : t("health.tokenRejectedDetail", { platform: name });
    return { level: "error", label: t("health.tokenRejected"), detail, fix: "token" };
  }
  if (platform && (platform.webhook === "not_set" || platform.webhook === "elsewhere")) {
    const detail = t(platform.webhook === "elsewhere" ? "health.webhookElsewhere" : "health.webhookNotSet", { platform: name });
    return { level: "error", label: t("health.noWebhook"), detail, fix: "webhook" };
  }
  if (channel.state === "paused") return { level: "paused", label: t("health.paused") };
  if (platform && platform.last_error && Date.now() - platform.last_error_at_ms < RECENT_ERROR_MS) {
    const detail = t("health.lastError", { platform: name, when: timeAgo(platform.last_error_at_ms), error: platform.last_error });
    return { level: "warn", label: t("health.deliveryErrors"), detail };
  }
  return { level: "ok", label: t("health.healthy") };
}

function fixAction(channel, fix, button) {
  if (fix === "token" && channel.platform === "whatsapp") return { label: t("waFix.action"), run: () => openWhatsAppTokenDialog(channel) };
  if (fix === "token") return { label: t("fix.action"), run: () => openTokenDialog(channel) };
  if (fix === "webhook") return { label: t("webhook.action"), run: (event) => registerWebhook(channel, event.currentTarget) };
  return null;
}

const DAY = 86400000;

function accountHealth(account) {
  if (account.state === "needs_reauth") {
    return { level: "error", value: t("kommo.needsReauth"), sub: account.last_error || t("kommo.needsReauthSub") };
  }
  if (account.state !== "active") return { level: "error", value: t("kommo.disconnected"), sub: t("kommo.disconnectedSub") };
  const token = account.token || {};
  if (token.kind === "long_lived" && token.expires_at_ms) {
    const left = token.expires_at_ms - Date.now();
    if (left < 0) return { level: "error", value: t("kommo.tokenExpired"), sub: formatDate(token.expires_at_ms) };
    const sub = t("kommo.longLivedUntil", { date: formatDate(token.expires_at_ms) });
    return { level: left < 14 * DAY ? "warn" : "ok", value: t("kommo.connected"), sub };
  }
  if (token.kind === "long_lived") return { level: "ok", value: t("kommo.connected"), sub: t("kommo.longLived") };
  if (token.kind === "oauth") return { level: "ok", value: t("kommo.connected"), sub: t("kommo.oauth") };
  return { level: "", value: t("kommo.connected"), sub: t("kommo.noCrmToken"), chatsOnly: true };
}

function issuesOf(overview) {
  const issues = [];
  const { account } = overview;
  if (account.state !== "active") {
    issues.push({
      level: "error",
      title: account.state === "needs_reauth" ? t("issue.reauthTitle") : t("issue.disconnectedTitle"),
      detail: account.last_error || t("issue.reauthDetail"),
      action: account.reauthorize_url ? { label: t("issue.reauthAction"), href: account.reauthorize_url } : null,
    });
  } else {
    const health = accountHealth(account);
    if (health.chatsOnly) {
      issues.push({ level: "info", title: t("issue.chatsOnlyTitle"), detail: t("issue.chatsOnlyDetail") });
    } else if (health.level !== "ok") {
      issues.push({
        level: health.level,
        title: health.level === "error" ? t("issue.tokenExpiredTitle") : t("issue.tokenTitle"),
        detail: health.sub,
        action: account.reauthorize_url ? { label: t("issue.reauthAction"), href: account.reauthorize_url } : null,
      });
    }
  }
  const shown = overview.channels.filter((c) => c.state !== "disconnected");
  for (const channel of shown) {
    const health = channelHealth(channel);
    if (health.level === "error" || health.level === "warn") {
      const tokenTitle = channel.platform === "whatsapp" ? "waFix.issueTitle" : "issue.botTokenTitle";
      const title = { token: tokenTitle, webhook: "issue.webhookTitle" }[health.fix] || "issue.channelTitle";
      issues.push({ level: health.level, title: t(title, { name: channel.name }), detail: health.detail || health.label, action: fixAction(channel, health.fix) });
    }
    if (channel.state === "paused") {
      issues.push({
        level: "info",
        title: t("issue.pausedTitle", { name: channel.name }),
        detail: channel.held_messages ? tn("issue.pausedHeld", channel.held_messages) : t("issue.pausedNone"),
        action: { label: t("pause.resume"), run: (event) => resumeChannel(channel, event.currentTarget) },
      });
    }
  }
  if (!shown.length) {
    issues.push({
      level: "info",
      title: t("issue.noChannelTitle"),
      detail: t("issue.noChannelDetail"),
      action: { label: t("channels.add"), run: () => openTokenDialog() },
    });
  }
  if (overview.pipelines_error) {
    issues.push({ level: "info", title: t("issue.pipelinesTitle"), detail: overview.pipelines_error });
  }
  return issues;
}

// --- the status header ----------------------------------------------------------------------------

function tile(label, iconName, value, sub, level, textual) {
  return h(
    "div",
    { class: `tile${level ? ` is-${level}` : ""}`, role: "group", "aria-label": label },
    h("span", { class: "tile-label" }, icon(iconName, "icon-sm"), label),
    h("strong", { class: `tile-value${textual ? " is-text" : ""}`, text: value }),
    h("span", { class: "tile-sub", text: sub }),
  );
}

function renderStatus(overview) {
  const { account, stats } = overview;
  const health = accountHealth(account);
  const issues = issuesOf(overview);
  const problems = issues.filter((i) => i.level !== "info").length;
  const overall = problems ? (issues.some((i) => i.level === "error") ? "error" : "warn") : "ok";
  const badge = {
    ok: ["badge-ok", t("status.allGood")],
    warn: ["badge-warn", t("status.attention")],
    error: ["badge-error", t("status.actionNeeded")],
  }[overall];

  const section = h(
    "section",
    { class: "card status", "aria-labelledby": "status-title" },
    h(
      "div",
      { class: "status-top" },
      h(
        "div",
        {},
        h("h1", { class: "status-title", id: "status-title", text: t("status.title") }),
        h("p", { class: "status-lead", text: account.domain || account.account_id }),
      ),
      h("span", { class: `badge ${badge[0]}`, "data-testid": "overall", text: badge[1] }),
    ),
    h(
      "div",
      { class: "tiles" },
      tile(t("tile.kommo"), "shield", health.value, health.sub, health.level, true),
      tile(
        t("tile.channels"),
        "plug",
        formatNumber(stats.channels),
        stats.channels ? tn("tile.channelsSub", stats.channels) : t("tile.channelsNone"),
        stats.channels ? "" : "warn",
      ),
      tile(t("tile.messages"), "message", formatNumber(stats.messages_today), t("tile.messagesSub"), ""),
      tile(
        t("tile.attention"),
        "alert",
        problems ? formatNumber(problems) : "0",
        problems ? tn("tile.attentionSub", problems) : t("tile.attentionNone"),
        problems ? overall : "ok",
      ),
    ),
  );
  if (issues.length) {
    const list = h("ul", { class: "issues", "aria-label": t("issue.listLabel") });
    for (const issue of issues) list.append(renderIssue(issue));
    section.append(list);
  }
  return section;
}

function renderIssue(issue) {
  let action = null;
  if (issue.action && issue.action.href) {
    action = h(
      "a",
      { class: `btn ${issue.level === "error" ? "btn-danger" : "btn-primary"}`, href: issue.action.href, target: "_blank", rel: "noopener" },
      h("span", { class: "btn-label", text: issue.action.label }),
      icon("external", "icon-sm"),
    );
  } else if (issue.action) {
    action = h(
      "button",
      { class: `btn ${issue.level === "error" ? "btn-danger" : "btn-secondary"}`, type: "button", onclick: issue.action.run },
      spinner(),
      h("span", { class: "btn-label", text: issue.action.label }),
    );
  }
  return h(
    "li",
    { class: `issue is-${issue.level}` },
    h("span", { class: "issue-icon" }, icon(issue.level === "info" ? "info" : "alert")),
    h(
      "span",
      { class: "issue-text" },
      h("span", { class: "issue-title", text: issue.title }),
      h("span", { class: "issue-detail", text: issue.detail }),
    ),
    action,
  );
}

// --- channels -------------------------------------------------------------------------------------

function platformLabel(channel) {
  return { telegram: "Telegram", whatsapp: "WhatsApp" }[channel.platform] || channel.platform;
}

function webhookFact(platform) {
  if (!platform && state.health === null) return h("dd", { class: "is-pending" }, spinner(), t("channel.webhookChecking"));
  if (!platform || platform.token_rejected || platform.unreachable || platform.webhook === "unknown") {
    const why = platform ? platform.reason : "";
    return h("dd", { title: why || "" }, h("span", { class: "is-muted" }, icon("info", "icon-sm")), t("channel.webhookUnknown"));
  }
  if (platform.webhook === "registered") {
    const pending = platform.pending_updates ? ` · ${tn("channel.pending", platform.pending_updates)}` : "";
    return h("dd", {}, h("span", { class: "is-ok" }, icon("check", "icon-sm")), t("channel.webhookOk"), pending);
  }
  const label = platform.webhook === "elsewhere" ? t("channel.webhookElsewhere") : t("channel.webhookMissing");
  return h("dd", {}, h("span", { class: "is-bad" }, icon("close", "icon-sm")), label);
}

class ChannelCard {
  constructor(channel) {
    this.id = channel.id;
    const base = `ch-${channel.id}`;
    this.titleId = `${base}-title`;
    this.panelId = `${base}-settings`;

    this.title = h("h3", { class: "channel-name", id: this.titleId, tabindex: "-1" });
    this.sub = h("p", { class: "channel-sub" });
    this.badge = h("span", { class: "badge" });
    this.facts = h("dl", { class: "channel-facts" });
    this.errorLine = h("div", { class: "channel-error", hidden: true });
    this.pausedLine = h("div", { class: "channel-paused", hidden: true });
    this.toggle = h(
      "button",
      {
        class: "btn btn-ghost disclosure",
        type: "button",
        "aria-expanded": "false",
        "aria-controls": this.panelId,
        onclick: () => this.setOpen(this.toggle.getAttribute("aria-expanded") !== "true"),
      },
      h("span", { class: "btn-label", text: t("channel.settings") }),
      icon("chevron", "icon-sm"),
    );
    this.removeButton = h(
      "button",
      { class: "btn btn-danger-ghost", type: "button", onclick: () => openRemoveDialog(this) },
      icon("trash", "icon-sm"),
      h("span", { class: "btn-label", text: t("channel.remove") }),
    );
    this.pauseIcon = h("span", { class: "btn-icon-default" });
    this.pauseLabel = h("span", { class: "btn-label" });
    this.pauseButton = h(
      "button",
      {
        class: "btn btn-ghost pause-toggle",
        type: "button",
        onclick: () => (this.channel.state === "paused" ? resumeChannel(this.channel, this.pauseButton) : openPauseDialog(this)),
      },
      spinner(),
      this.pauseIcon,
      this.pauseLabel,
    );
    this.form = new SettingsForm(this, channel);
    this.panel = h("div", { class: "settings", id: this.panelId, hidden: true }, this.form.el);
    this.el = h(
      "li",
      { class: "card channel", "data-channel-id": channel.id },
      h("div", { class: "channel-head" }, platformLogo(channel.platform), h("div", { class: "channel-id" }, this.title, this.sub), this.badge),
      this.facts,
      this.pausedLine,
      this.errorLine,
      h("div", { class: "channel-actions" }, this.toggle, h("div", { class: "channel-actions-end" }, this.pauseButton, this.removeButton)),
      this.panel,
    );
    this.update(channel);
  }

  update(channel) {
    this.channel = channel;
    this.title.textContent = channel.name || channel.external_id;
    const subKey = channel.platform === "whatsapp" ? "channel.subNumber" : "channel.sub";
    this.sub.textContent = t(subKey, { platform: platformLabel(channel), id: channel.external_id });
    const health = channelHealth(channel);
    this.badge.className = `badge badge-${health.level}`;
    this.badge.textContent = health.label;
    this.el.classList.toggle("is-paused", channel.state === "paused");

    // What is wrong, in words, with the button that mends it.
    const problem = health.level === "error" || health.level === "warn";
    const signature = JSON.stringify([health.level, health.detail, health.fix]);
    if (signature !== this.errorSignature) {
      this.errorSignature = signature;
      const action = problem ? fixAction(channel, health.fix) : null;
      this.errorLine.className = `channel-error is-${health.level}`;
      this.errorLine.hidden = !problem;
      this.errorLine.replaceChildren();
      append(this.errorLine, [
        icon("alert", "icon-sm"),
        h("span", { class: "channel-error-text", text: health.detail || "" }),
        action
          ? h(
              "button",
              { class: `btn btn-sm ${health.level === "error" ? "btn-danger" : "btn-secondary"}`, type: "button", onclick: action.run },
              spinner(),
              h("span", { class: "btn-label", text: action.label }),
            )
          : null,
      ]);
    }

    // Paused: what happens meanwhile, and how much waits.
    const paused = channel.state === "paused";
    this.pausedLine.hidden = !paused;
    if (paused) {
      const since = channel.paused_at_ms ? t("pause.since", { when: timeAgo(channel.paused_at_ms) }) : t("pause.now");
      const held = channel.held_messages ? tn("pause.held", channel.held_messages) : t("pause.heldNone");
      this.pausedLine.replaceChildren(icon("pause", "icon-sm"), h("span", {}, h("strong", { text: since }), " ", held));
    }
    if (!this.pauseButton.classList.contains("is-busy")) {
      this.pauseButton.className = `btn pause-toggle ${paused ? "btn-primary" : "btn-ghost"}`;
      this.pauseIcon.replaceChildren(icon(paused ? "play" : "pause", "icon-sm"));
      this.pauseLabel.textContent = paused ? t("pause.resume") : t("pause.pause");
    }

    const webhook = webhookFact(platformHealth(channel));
    const last = channel.last_message_at_ms
      ? h("dd", { title: formatDateTime(channel.last_message_at_ms), text: timeAgo(channel.last_message_at_ms) })
      : h("dd", { text: t("channel.noMessages") });
    const conversations = h(
      "dd",
      {},
      formatNumber(channel.conversations),
      channel.closed_conversations ? ` · ${tn("channel.closed", channel.closed_conversations)}` : "",
    );
    this.facts.replaceChildren(
      h("div", { class: "fact" }, h("dt", { text: t("channel.webhook") }), webhook),
      h("div", { class: "fact" }, h("dt", { text: t("channel.lastMessage") }), last),
      h("div", { class: "fact" }, h("dt", { text: t("channel.today") }), h("dd", { text: formatNumber(channel.messages_today) })),
      h("div", { class: "fact" }, h("dt", { text: t("channel.conversations") }), conversations),
    );
    this.form.update(channel);
  }

  setOpen(open) {
    this.toggle.setAttribute("aria-expanded", open ? "true" : "false");
    this.panel.hidden = !open;
  }

  highlight() {
    this.el.classList.add("is-new");
    setTimeout(() => this.el.classList.remove("is-new"), 4000);
  }
}

const FIELDS = ["source_name", "pipeline_id", "contact_rule", "update_profiles", "robot_label"];

class SettingsForm {
  constructor(card, channel) {
    this.card = card;
    const base = `ch-${channel.id}`;
    const ids = {
      source: `${base}-source`,
      sourceHint: `${base}-source-hint`,
      pipeline: `${base}-pipeline`,
      pipelineHint: `${base}-pipeline-hint`,
      rule: `${base}-rule`,
      profiles: `${base}-profiles`,
      profilesHint: `${base}-profiles-hint`,
      robot: `${base}-robot`,
      robotHint: `${base}-robot-hint`,
      error: `${base}-error`,
    };
    this.ids = ids;
    this.source = h("input", {
      class: "input",
      id: ids.source,
      name: "source_name",
      type: "text",
      maxlength: "200",
      autocomplete: "off",
      "aria-describedby": ids.sourceHint,
    });
    this.pipeline = h("select", { class: "select", id: ids.pipeline, name: "pipeline_id", "aria-describedby": ids.pipelineHint });
    this.pipelineHint = h("p", { class: "hint", id: ids.pipelineHint });
    this.rules = {
      create: h("input", { type: "radio", name: `${base}-rule`, value: "create" }),
      link_existing: h("input", { type: "radio", name: `${base}-rule`, value: "link_existing" }),
    };
    this.profiles = h("input", {
      class: "switch",
      id: ids.profiles,
      type: "checkbox",
      role: "switch",
      name: "update_profiles",
      "aria-describedby": ids.profilesHint,
    });
    this.robot = h("input", {
      class: "input",
      id: ids.robot,
      name: "robot_label",
      type: "text",
      maxlength: "64",
      autocomplete: "off",
      "aria-describedby": ids.robotHint,
    });
    this.preview = h("span", { class: "bubble" });
    this.error = h("div", { class: "form-error", id: ids.error, role: "alert", hidden: true });
    this.status = h("span", { class: "form-status", role: "status", "aria-live": "polite" });
    this.save = h(
      "button",
      { class: "btn btn-primary", type: "submit", disabled: true },
      spinner(),
      h("span", { class: "btn-label", text: t("form.save") }),
    );
    this.discard = h("button", { class: "btn btn-ghost", type: "button", hidden: true, onclick: () => this.reset() }, t("form.discard"));

    const choice = (value, title, desc) =>
      h(
        "label",
        { class: "choice" },
        this.rules[value],
        h("span", {}, h("span", { class: "choice-title", text: title }), h("span", { class: "choice-desc", text: desc })),
      );

    this.el = h(
      "form",
      { novalidate: true, "aria-labelledby": card.titleId, onsubmit: (event) => this.submit(event), oninput: () => this.changed(), onchange: () => this.changed() },
      h("h4", { class: "settings-group-title", text: t("form.sourceGroup") }),
      h(
        "div",
        { class: "field-row" },
        h(
          "div",
          { class: "field" },
          h("label", { class: "label", for: ids.source, text: t("form.sourceName") }),
          this.source,
          h("p", { class: "hint", id: ids.sourceHint, text: t("form.sourceNameHint") }),
        ),
        h(
          "div",
          { class: "field" },
          h("label", { class: "label", for: ids.pipeline, text: t("form.pipeline") }),
          this.pipeline,
          this.pipelineHint,
        ),
      ),
      h("h4", { class: "settings-group-title", text: t("form.contactsGroup") }),
      h(
        "fieldset",
        { class: "fieldset" },
        h("legend", { class: "label", text: t("form.contactRule") }),
        h(
          "div",
          { class: "choices" },
          choice("create", t("form.ruleCreate"), t("form.ruleCreateHint")),
          choice("link_existing", t("form.ruleLink"), t("form.ruleLinkHint")),
        ),
      ),
      h(
        "label",
        { class: "switch-row", for: ids.profiles },
        h("span", {}, h("span", { class: "label", text: t("form.updateProfiles") }), h("span", { class: "hint", id: ids.profilesHint, text: t("form.updateProfilesHint") })),
        this.profiles,
      ),
      h("h4", { class: "settings-group-title", text: t("form.botGroup") }),
      h(
        "div",
        { class: "field" },
        h("label", { class: "label", for: ids.robot, text: t("form.robotLabel") }),
        this.robot,
        h("p", { class: "hint", id: ids.robotHint, text: t("form.robotLabelHint") }),
        h("div", { class: "preview", "aria-hidden": "true" }, h("span", { text: t("form.preview") }), this.preview),
      ),
      this.error,
      h("div", { class: "form-foot" }, this.save, this.discard, this.status),
    );
    this.el.classList.add("settings-form");
    this.update(channel);
  }

  values() {
    const rule = this.rules.link_existing.checked ? "link_existing" : "create";
    return {
      source_name: this.source.value.trim(),
      pipeline_id: Number(this.pipeline.value),
      contact_rule: rule,
      update_profiles: this.profiles.checked,
      robot_label: this.robot.value.trim(),
    };
  }

  saved() {
    const s = this.channel.settings;
    return {
      source_name: s.source_name,
      pipeline_id: this.pipelineValue(s.pipeline_id),
      contact_rule: s.contact_rule,
      update_profiles: s.update_profiles,
      robot_label: s.robot_label,
    };
  }

  pipelineValue(id) {
    const main = (state.overview.pipelines || []).find((p) => p.is_main);
    return main && id === main.id ? 0 : id;
  }

  changes() {
    const now = this.values();
    const before = this.saved();
    const diff = {};
    for (const field of FIELDS) if (now[field] !== before[field]) diff[field] = now[field];
    return diff;
  }

  update(channel) {
    this.channel = channel;
    this.source.placeholder = channel.name || "";
    this.fillPipelines();
    if (!this.dirty()) this.reset(true);
  }

  fillPipelines() {
    const pipelines = state.overview.pipelines || [];
    const signature = JSON.stringify([pipelines, this.channel.settings.pipeline_id, state.overview.pipelines_error]);
    if (signature === this.pipelineSignature) return;
    this.pipelineSignature = signature;
    const current = this.pipeline.value;
    const main = pipelines.find((p) => p.is_main);
    const options = [h("option", { value: "0", text: main ? t("form.mainPipelineNamed", { name: main.name }) : t("form.mainPipeline") })];
    for (const p of pipelines) if (!p.is_main) options.push(h("option", { value: String(p.id), text: p.name }));
    const wanted = this.pipelineValue(this.channel.settings.pipeline_id);
    if (wanted && !pipelines.some((p) => p.id === wanted)) {
      options.push(h("option", { value: String(wanted), text: t("form.unknownPipeline", { id: wanted }) }));
    }
    this.pipeline.replaceChildren(...options);
    if (current && [...this.pipeline.options].some((o) => o.value === current)) this.pipeline.value = current;
    this.pipelineHint.textContent = state.overview.pipelines_error || t("form.pipelineHint");
  }

  dirty() {
    return this.channel !== undefined && this.source.dataset.filled === "1" && Object.keys(this.changes()).length > 0;
  }

  reset(quiet) {
    const s = this.saved();
    this.source.value = s.source_name;
    this.source.dataset.filled = "1";
    this.pipeline.value = String(s.pipeline_id);
    this.rules.create.checked = s.contact_rule !== "link_existing";
    this.rules.link_existing.checked = s.contact_rule === "link_existing";
    this.profiles.checked = s.update_profiles;
    this.robot.value = s.robot_label;
    if (!quiet) this.status.textContent = "";
    this.clearError();
    this.changed();
  }

  changed() {
    const dirty = this.dirty();
    this.save.disabled = !dirty || this.save.classList.contains("is-busy");
    this.discard.hidden = !dirty;
    if (dirty) {
      this.status.className = "form-status";
      this.status.textContent = t("form.unsaved");
    } else if (this.status.textContent === t("form.unsaved")) {
      this.status.textContent = "";
    }
    const label = this.robot.value.trim();
    this.preview.textContent = `${label ? `${label} ` : ""}${t("form.previewText")}`;
  }

  clearError() {
    this.error.hidden = true;
    this.error.replaceChildren();
    for (const input of [this.source, this.pipeline, this.robot]) input.removeAttribute("aria-invalid");
  }

  showError(error) {
    const message = error instanceof ApiError ? `${error.code} ${error.message}` : "";
    this.error.replaceChildren(icon("alert", "icon-sm"), errorLines(serverError(error, "form.errorRejected")));
    this.error.hidden = false;
    // The error's code (invalid_pipeline, ...) or its sentence names the field.
    const named = FIELDS.find((name) => message.includes(name)) || (message.includes("invalid_pipeline") ? "pipeline_id" : "");
    const field = { source_name: this.source, pipeline_id: this.pipeline, robot_label: this.robot }[named];
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", `${field.getAttribute("aria-describedby").split(" ")[0]} ${this.ids.error}`);
      field.focus();
    }
  }

  async submit(event) {
    event.preventDefault();
    const diff = this.changes();
    if (!Object.keys(diff).length) return;
    this.clearError();
    this.status.textContent = "";
    setBusy(this.save, true, t("form.saving"));
    try {
      const { channel } = await api("PATCH", `channels/${encodeURIComponent(this.card.id)}`, diff);
      replaceChannel(channel);
      this.reset(true);
      this.status.className = "form-status is-ok";
      this.status.replaceChildren(icon("check", "icon-sm"), t("form.saved"));
    } catch (error) {
      if (isSessionError(error)) return signedOut(error);
      this.showError(error);
    } finally {
      setBusy(this.save, false);
      this.changed();
    }
  }
}

function replaceChannel(channel) {
  const channels = state.overview.channels.filter((c) => c.id !== channel.id);
  const index = state.overview.channels.findIndex((c) => c.id === channel.id);
  if (index >= 0) channels.splice(index, 0, channel);
  else channels.push(channel);
  state.overview.channels = channels;
  state.overview.stats = recount(channels, state.overview.stats);
  renderOverview();
}

function recount(channels, stats) {
  const active = channels.filter((c) => c.state !== "disconnected");
  return {
    ...stats,
    channels: active.length,
    messages_today: channels.reduce((sum, c) => sum + (c.messages_today || 0), 0),
    closed_conversations: active.reduce((sum, c) => sum + (c.closed_conversations || 0), 0),
  };
}

function renderChannels(overview) {
  const view = state.view;
  const active = overview.channels.filter((c) => c.state !== "disconnected");
  const removed = overview.channels.filter((c) => c.state === "disconnected");
  view.channelCount.textContent = active.length ? tn("channels.count", active.length) : "";

  if (!active.length) {
    view.list.replaceChildren();
    view.list.hidden = true;
    view.empty.hidden = false;
  } else {
    view.list.hidden = false;
    view.empty.hidden = true;
    const keep = new Set(active.map((c) => c.id));
    for (const [id, card] of state.cards) {
      if (!keep.has(id)) {
        card.el.remove();
        state.cards.delete(id);
      }
    }
    active.forEach((channel, index) => {
      let card = state.cards.get(channel.id);
      if (card) card.update(channel);
      else {
        card = new ChannelCard(channel);
        state.cards.set(channel.id, card);
      }
      // Move a card only when it is out of place: moving an element takes the focus away from it.
      if (view.list.children[index] !== card.el) view.list.insertBefore(card.el, view.list.children[index] || null);
    });
  }

  view.removed.hidden = !removed.length;
  if (removed.length) {
    view.removedSummary.textContent = tn("channels.removed", removed.length);
    view.removedList.replaceChildren(
      ...removed.map((c) =>
        h(
          "li",
          {},
          h("span", { text: c.name || c.external_id }),
          h("span", { class: "badge badge-off", text: t("health.disconnected") }),
        ),
      ),
    );
  }
}

function renderOverview() {
  const overview = state.overview;
  // The status header is rebuilt only when what it shows changed, keeping the focus where it was.
  const signature = JSON.stringify([overview.account, overview.stats, overview.pipelines_error, overview.channels.map(statusKey), state.health]);
  if (signature !== state.view.statusSignature) {
    const focused = state.view.status.contains(document.activeElement) ? document.activeElement.textContent : null;
    state.view.status.replaceWith((state.view.status = renderStatus(overview)));
    state.view.statusSignature = signature;
    if (focused !== null) {
      const again = [...state.view.status.querySelectorAll("a, button")].find((el) => el.textContent === focused);
      if (again) again.focus();
    }
  }
  renderChannels(overview);
}

function statusKey(channel) {
  return [channel.id, channel.name, channel.state, channel.held_messages];
}

function buildLayout() {
  const main = document.getElementById("main");
  const addButton = h(
    "button",
    { class: "btn btn-primary", type: "button", onclick: () => openTokenDialog() },
    icon("plus", "icon-sm"),
    h("span", { class: "btn-label", text: t("channels.add") }),
  );
  const view = {
    status: h("section"),
    channelCount: h("p", { class: "section-sub" }),
    list: h("ul", { class: "channel-list", "aria-labelledby": "channels-title" }),
    empty: h(
      "div",
      { class: "card empty", hidden: true },
      h("div", { class: "empty-art" }, icon("plug")),
      h("h3", { text: t("empty.title") }),
      h("p", { text: t("empty.text") }),
      h(
        "button",
        { class: "btn btn-primary", type: "button", onclick: () => openTokenDialog() },
        icon("plus", "icon-sm"),
        h("span", { class: "btn-label", text: t("channels.add") }),
      ),
    ),
    removedSummary: h("summary"),
    removedList: h("ul"),
  };
  view.removed = h("details", { class: "removed", hidden: true }, view.removedSummary, view.removedList);
  view.addButton = addButton;
  const addWhatsApp = h(
    "button",
    { class: "btn btn-secondary", type: "button", onclick: () => openWhatsAppDialog() },
    icon("plus", "icon-sm"),
    h("span", { class: "btn-label", text: t("channels.addWhatsApp") }),
  );
  view.empty.append(
    h(
      "button",
      { class: "btn btn-secondary", type: "button", onclick: () => openWhatsAppDialog() },
      icon("plus", "icon-sm"),
      h("span", { class: "btn-label", text: t("channels.addWhatsApp") }),
    ),
  );
  state.view = view;

  const refresh = h(
    "button",
    { class: "btn btn-ghost btn-icon", type: "button", "aria-label": t("top.refresh"), title: t("top.refresh"), onclick: () => refreshOverview(true) },
    icon("refresh"),
  );
  document.getElementById("topbar-slot").replaceChildren(refresh);
  view.refreshButton = refresh;

  main.replaceChildren(
    view.status,
    h(
      "section",
      { class: "section", "aria-labelledby": "channels-title" },
      h(
        "div",
        { class: "section-head" },
        h("div", {}, h("h2", { class: "section-title", id: "channels-title", text: t("channels.title") }), view.channelCount),
        h("div", { class: "section-actions" }, addWhatsApp, addButton),
      ),
      view.list,
      view.empty,
      view.removed,
    ),
  );
  main.removeAttribute("aria-busy");
}

async function refreshOverview(manual) {
  if (manual) state.view.refreshButton.disabled = true;
  try {
    const health = loadHealth(manual);
    state.overview = await api("GET", "overview");
    renderOverview();
    await health;
    if (manual) toast(t("top.refreshed"));
  } catch (error) {
    if (isSessionError(error)) return signedOut(error);
    if (manual) toast(errorText(error));
  } finally {
    if (manual) state.view.refreshButton.disabled = false;
  }
}

// What the platforms say: asked after the view is up (it waits on them), `fresh` past the bridge's
// few-seconds memory of it. A failure leaves the last answer in place: the window works without it.
async function loadHealth(fresh) {
  try {
    const { channels } = await api("GET", fresh ? "health?fresh=1" : "health");
    state.health = Object.fromEntries(channels.map((c) => [c.id, c]));
    if (!performance.getEntriesByName("bridge:health").length) performance.mark("bridge:health");
  } catch (error) {
    if (isSessionError(error)) return signedOut(error);
    if (state.health === null) state.health = {};
    return;
  }
  if (state.view && document.documentElement.dataset.state === "ready") renderOverview();
}

// --- channel actions ------------------------------------------------------------------------------

async function channelCall(button, busyLabel, path, body) {
  if (button) setBusy(button, true, busyLabel);
  try {
    const { channel } = await api("POST", path, body);
    replaceChannel(channel);
    return channel;
  } finally {
    if (button && document.contains(button)) setBusy(button, false);
    if (state.view) renderOverview(); // the button's label follows the channel's new state
  }
}

async function resumeChannel(channel, button) {
  try {
    const resumed = await channelCall(button, t("pause.resuming"), `channels/${encodeURIComponent(channel.id)}/resume`);
    toast(resumed.held_messages ? tn("pause.resumedHeld", resumed.held_messages, { name: resumed.name }) : t("pause.resumed", { name: resumed.name }));
    const card = state.cards.get(resumed.id);
    if (card && button && !document.contains(button)) card.pauseButton.focus();
    // The held messages leave the lot as they are carried: show it shrink.
    setTimeout(() => refreshOverview(false), 1500);
  } catch (error) {
    if (isSessionError(error)) return signedOut(error);
    toast(errorText(error), "error");
  }
}

async function registerWebhook(channel, button) {
  try {
    await channelCall(button, t("webhook.registering"), `channels/${encodeURIComponent(channel.id)}/webhook`);
    await loadHealth(false);
    toast(t("webhook.done", { name: channel.name }));
  } catch (error) {
    if (isSessionError(error)) return signedOut(error);
    toast(errorText(error, { name: channel.name }), "error");
  }
}

function scheduleRefresh() {
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(() => {
    if (document.visibilityState === "visible" && !document.querySelector("dialog[open]")) refreshOverview(false);
  }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.view) refreshOverview(false);
  });
}

// --- dialogs --------------------------------------------------------------------------------------

function dialog(labelledBy, describedBy, ...children) {
  const el = h("dialog", { class: "modal", "aria-labelledby": labelledBy, "aria-describedby": describedBy }, ...children);
  document.body.append(el);
  return el;
}

function closeDialog(el, returnFocus) {
  if (el.open) el.close();
  el.remove();
  if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
}

// Connect a new bot, or (`fixing` a channel) give a connected bot its new token: the same dialog, checked
// live with Telegram either way.
function openTokenDialog(fixing) {
  const opener = document.activeElement;
  const ids = { title: nextId("add-title"), text: nextId("add-text"), input: nextId("token"), hint: nextId("token-hint"), error: nextId("token-error") };
  const input = h("input", {
    class: "input mono",
    id: ids.input,
    name: "token",
    type: "text",
    required: true,
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    inputmode: "text",
    placeholder: "123456789:AAHd…",
    "aria-describedby": `${ids.hint} ${ids.error}`,
  });
  const hint = h("p", { class: "hint", id: ids.hint, text: t("add.tokenHint") });
  const error = h("div", { class: "form-error", id: ids.error, role: "alert", hidden: true });
  const submit = h(
    "button",
    { class: "btn btn-primary", type: "submit" },
    spinner(),
    h("span", { class: "btn-label", text: fixing ? t("fix.save") : t("add.connect") }),
  );
  const cancel = h("button", { class: "btn btn-secondary", type: "button" }, t("add.cancel"));
  const steps = fixing
    ? [
        h("li", {}, h("span", {}, t("add.step1a"), h("b", { text: "@BotFather" }), t("fix.step1b"))),
        h("li", {}, h("span", { text: t("fix.step2", { name: fixing.name }) })),
        h("li", {}, h("span", { text: t("fix.step3") })),
      ]
    : [
        h("li", {}, h("span", {}, t("add.step1a"), h("b", { text: "@BotFather" }), t("add.step1b"))),
        h("li", {}, h("span", { text: t("add.step2") })),
        h("li", {}, h("span", { text: t("add.step3") })),
      ];

  const showError = (lines) => {
    error.replaceChildren(icon("alert", "icon-sm"), errorLines(lines));
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
  };
  const clearError = () => {
    error.hidden = true;
    error.replaceChildren();
    input.removeAttribute("aria-invalid");
  };

  const form = h(
    "form",
    { class: "modal-body", method: "dialog", novalidate: true },
    dialogHead("telegram", ids.title, fixing ? t("fix.title", { name: fixing.name }) : t("add.title"), () => closeDialog(el, opener)),
    h("ol", { class: "steps", id: ids.text }, steps),
    h("div", { class: "field" }, h("label", { class: "label", for: ids.input, text: fixing ? t("fix.tokenLabel") : t("add.tokenLabel") }), input, hint),
    error,
    h("div", { class: "modal-foot" }, cancel, submit),
  );
  const el = dialog(ids.title, ids.text, form);

  closesWith(el, cancel, opener);
  input.addEventListener("input", () => {
    clearError();
    const value = input.value.trim();
    hint.className = "hint";
    hint.textContent = t("add.tokenHint");
    if (TOKEN_SHAPE.test(value)) {
      hint.className = "field-ok";
      hint.replaceChildren(icon("check", "icon-sm"), t("add.tokenShapeOk"));
    }
  });
  input.addEventListener("paste", () => {
    // BotFather's message is often pasted whole: keep just the token.
    setTimeout(() => {
      const found = input.value.match(TOKEN_IN_TEXT);
      if (found && found[0] !== input.value.trim()) {
        input.value = found[0];
        input.dispatchEvent(new Event("input"));
      }
    });
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    clearError();
    if (!token) {
      showError([t("add.errorEmpty")]);
      input.focus();
      return;
    }
    if (!TOKEN_SHAPE.test(token)) {
      showError([t("add.errorShape")]);
      input.focus();
      return;
    }
    setBusy(submit, true, t("add.checking"));
    input.readOnly = true;
    cancel.disabled = true;
    try {
      const { channel } = fixing
        ? await api("POST", `channels/${encodeURIComponent(fixing.id)}/token`, { token })
        : await api("POST", "channels", { platform: "telegram", token });
      closeDialog(el);
      showSavedChannel(channel, fixing ? t("fix.done", { name: channel.name }) : t("add.connected", { name: channel.name }), !fixing);
    } catch (failure) {
      if (isSessionError(failure)) {
        closeDialog(el);
        return signedOut(failure);
      }
      setBusy(submit, false);
      input.readOnly = false;
      cancel.disabled = false;
      showError(serverError(failure, "add.errorRejected", { name: fixing ? fixing.name : "" }));
      input.focus();
      input.select();
    }
  });
  el.showModal();
  input.focus();
}

// Connect a WhatsApp business number: its two ids, the access token and the Meta app secret, checked live
// with WhatsApp (the token must reach this number of this business account).
// A dialog's head: the platform's logo, the title the dialog is labelled by, and its close button.
function dialogHead(platform, titleId, title, close) {
  return h(
    "div",
    { class: "modal-head" },
    platformLogo(platform),
    h("h2", { class: "modal-title", id: titleId, text: title }),
    h("button", { class: "btn btn-ghost btn-icon", type: "button", "aria-label": t("add.close"), onclick: close }, icon("close")),
  );
}

// The dialog closes by its Cancel button and by Escape, and gives the focus back to what opened it.
function closesWith(el, cancel, opener) {
  cancel.addEventListener("click", () => closeDialog(el, opener));
  el.addEventListener("cancel", (event) => {
    event.preventDefault();
    closeDialog(el, opener);
  });
}

// Numbered steps of a dialog (each a translated sentence); `id` describes the dialog.
function stepList(id, keys) {
  return h("ol", { class: "steps", id }, keys.map((key) => h("li", {}, h("span", { text: t(key) }))));
}

// A labelled input of a dialog, described by its hint and by the dialog's error line: ids, numbers and
// secrets are typed as they are, never corrected or remembered by the browser.
function dialogField(prefix, name, labelKey, hintKey, errorId, { secret = false, numeric = false, required = true } = {}) {
  const id = nextId(`${prefix}-${name}`);
  const hintId = nextId(`${prefix}-${name}-hint`);
  const input = h("input", {
    class: "input mono",
    id,
    name,
    type: secret ? "password" : "text",
    required,
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    inputmode: numeric ? "numeric" : null,
    "aria-describedby": `${hintId} ${errorId}`,
  });
  const wrap = h("div", { class: "field" }, h("label", { class: "label", for: id, text: t(labelKey) }), input, h("p", { class: "hint", id: hintId, text: t(hintKey) }));
  return { input, wrap };
}

// After a dialog added or mended a channel: its card, shown and focused, and the platforms asked again.
function showSavedChannel(channel, message, open) {
  replaceChannel(channel);
  const card = state.cards.get(channel.id);
  toast(message);
  if (card) {
    if (open) card.setOpen(true);
    card.highlight();
    card.el.scrollIntoView({ block: "nearest" });
    card.title.focus();
  }
  loadHealth(false);
}

function openWhatsAppDialog() {
  const opener = document.activeElement;
  const ids = { title: nextId("wa-title"), text: nextId("wa-text"), error: nextId("wa-error") };
  const fields = {
    phone_number_id: dialogField("wa", "phone_number_id", "wa.phoneLabel", "wa.phoneHint", ids.error, { numeric: true }),
    waba_id: dialogField("wa", "waba_id", "wa.wabaLabel", "wa.wabaHint", ids.error, { numeric: true }),
    token: dialogField("wa", "token", "wa.tokenLabel", "wa.tokenHint", ids.error, { secret: true }),
    app_secret: dialogField("wa", "app_secret", "wa.secretLabel", "wa.secretHint", ids.error, { secret: true }),
  };
  const error = h("div", { class: "form-error", id: ids.error, role: "alert", hidden: true });
  const submit = h("button", { class: "btn btn-primary", type: "submit" }, spinner(), h("span", { class: "btn-label", text: t("wa.connect") }));
  const cancel = h("button", { class: "btn btn-secondary", type: "button" }, t("add.cancel"));
  const showError = (lines) => {
    error.replaceChildren(icon("alert", "icon-sm"), errorLines(lines));
    error.hidden = false;
  };
  const form = h(
    "form",
    { class: "modal-body", method: "dialog", novalidate: true },
    dialogHead("whatsapp", ids.title, t("wa.title"), () => closeDialog(el, opener)),
    stepList(ids.text, ["wa.step1", "wa.step2", "wa.step3"]),
    ...Object.values(fields).map((f) => f.wrap),
    error,
    h("div", { class: "modal-foot" }, cancel, submit),
  );
  const el = dialog(ids.title, ids.text, form);
  closesWith(el, cancel, opener);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const values = Object.fromEntries(Object.entries(fields).map(([name, f]) => [name, f.input.value.trim()]));
    const missing = Object.entries(fields).find(([name]) => !values[name]);
    if (missing) {
      showError([t("wa.errorEmpty")]);
      missing[1].input.focus();
      return;
    }
    setBusy(submit, true, t("wa.checking"));
    cancel.disabled = true;
    try {
      const { channel } = await api("POST", "channels", { platform: "whatsapp", ...values });
      closeDialog(el);
      showSavedChannel(channel, t("add.connected", { name: channel.name }), true);
    } catch (failure) {
      if (isSessionError(failure)) {
        closeDialog(el);
        return signedOut(failure);
      }
      setBusy(submit, false);
      cancel.disabled = false;
      showError(serverError(failure, "wa.errorRejected", {}));
      fields.token.input.focus();
    }
  });
  el.showModal();
  fields.phone_number_id.input.focus();
}

// Give a connected WhatsApp number its new access token (after it was revoked or expired), and a new app
// secret if the admin reset that too: checked live with WhatsApp (the token must reach this number of this
// business account), kept encrypted, the app subscribed to the business account again.
function openWhatsAppTokenDialog(channel) {
  const opener = document.activeElement;
  const ids = { title: nextId("wafix-title"), text: nextId("wafix-text"), error: nextId("wafix-error") };
  const token = dialogField("wafix", "token", "waFix.tokenLabel", "wa.tokenHint", ids.error, { secret: true });
  const secret = dialogField("wafix", "app_secret", "waFix.secretLabel", "waFix.secretHint", ids.error, { secret: true, required: false });
  const error = h("div", { class: "form-error", id: ids.error, role: "alert", hidden: true });
  const submit = h("button", { class: "btn btn-primary", type: "submit" }, spinner(), h("span", { class: "btn-label", text: t("fix.save") }));
  const cancel = h("button", { class: "btn btn-secondary", type: "button" }, t("add.cancel"));
  const showError = (lines) => {
    error.replaceChildren(icon("alert", "icon-sm"), errorLines(lines));
    error.hidden = false;
    token.input.setAttribute("aria-invalid", "true");
  };
  const form = h(
    "form",
    { class: "modal-body", method: "dialog", novalidate: true },
    dialogHead("whatsapp", ids.title, t("waFix.title", { name: channel.name }), () => closeDialog(el, opener)),
    stepList(ids.text, ["waFix.step1", "waFix.step2", "waFix.step3"]),
    token.wrap,
    secret.wrap,
    error,
    h("div", { class: "modal-foot" }, cancel, submit),
  );
  const el = dialog(ids.title, ids.text, form);
  closesWith(el, cancel, opener);
  token.input.addEventListener("input", () => {
    error.hidden = true;
    token.input.removeAttribute("aria-invalid");
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = { token: token.input.value.trim() };
    if (!body.token) {
      showError([t("waFix.errorEmpty")]);
      token.input.focus();
      return;
    }
    if (secret.input.value.trim()) body.app_secret = secret.input.value.trim();
    setBusy(submit, true, t("wa.checking"));
    token.input.readOnly = true;
    secret.input.readOnly = true;
    cancel.disabled = true;
    try {
      const { channel: fixed } = await api("POST", `channels/${encodeURIComponent(channel.id)}/token`, body);
      closeDialog(el);
      showSavedChannel(fixed, t("fix.done", { name: fixed.name }), false);
    } catch (failure) {
      if (isSessionError(failure)) {
        closeDialog(el);
        return signedOut(failure);
      }
      setBusy(submit, false);
      token.input.readOnly = false;
      secret.input.readOnly = false;
      cancel.disabled = false;
      showError(serverError(failure, "wa.errorRejected", { name: channel.name }));
      token.input.focus();
      token.input.select();
    }
  });
  el.showModal();
  token.input.focus();
}

// A question the admin confirms or declines: `keep` is focused (the safe choice), `confirm` runs `act`,
// which returns what to do once the dialog is closed; a failure is shown in the dialog.
function confirmDialog({ name, art, title, body, labels, confirmClass, role, act }) {
  const opener = document.activeElement;
  const ids = { title: nextId(`${name}-title`), text: nextId(`${name}-text`) };
  const keep = h("button", { class: "btn btn-secondary", type: "button", autofocus: true }, labels.keep);
  const confirm = h(
    "button",
    { class: `btn ${confirmClass}`, type: "submit" },
    spinner(),
    h("span", { class: "btn-label", text: labels.confirm }),
  );
  const error = h("div", { class: "form-error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "modal-body", method: "dialog" },
    h("div", { class: "modal-head" }, art, h("h2", { class: "modal-title", id: ids.title, text: title })),
    body(ids.text),
    error,
    h("div", { class: "modal-foot" }, keep, confirm),
  );
  const el = dialog(ids.title, ids.text, form);
  if (role) el.setAttribute("role", role);
  keep.addEventListener("click", () => closeDialog(el, opener));
  el.addEventListener("cancel", (event) => {
    event.preventDefault();
    closeDialog(el, opener);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setBusy(confirm, true, labels.busy);
    keep.disabled = true;
    try {
      const after = await act();
      closeDialog(el);
      after();
    } catch (failure) {
      if (isSessionError(failure)) {
        closeDialog(el);
        return signedOut(failure);
      }
      setBusy(confirm, false);
      keep.disabled = false;
      error.replaceChildren(icon("alert", "icon-sm"), h("span", { text: errorText(failure) }));
      error.hidden = false;
    }
  });
  el.showModal();
  keep.focus();
}

function openRemoveDialog(card) {
  const channel = card.channel;
  confirmDialog({
    name: "remove",
    art: h("span", { class: "danger-art" }, icon("trash")),
    title: t("remove.title", { name: channel.name }),
    body: (id) => h("p", { class: "modal-text", id, text: t("remove.text") }),
    labels: { keep: t("remove.keep"), confirm: t("remove.confirm"), busy: t("remove.removing") },
    confirmClass: "btn-danger",
    role: "alertdialog",
    act: async () => {
      const { channel: removed } = await api("DELETE", `channels/${encodeURIComponent(channel.id)}`);
      return () => {
        replaceChannel(removed);
        toast(t("remove.done", { name: channel.name }));
        state.view.addButton.focus();
      };
    },
  });
}

function openPauseDialog(card) {
  const channel = card.channel;
  confirmDialog({
    name: "pause",
    art: h("span", { class: "pause-art" }, icon("pause")),
    title: t("pause.title", { name: channel.name }),
    body: (id) =>
      h(
        "ul",
        { class: "pause-facts", id },
        h("li", {}, icon("check", "icon-sm"), h("span", { text: t("pause.factHeld") })),
        h("li", {}, icon("close", "icon-sm"), h("span", { text: t("pause.factReplies") })),
        h("li", {}, icon("play", "icon-sm"), h("span", { text: t("pause.factResume") })),
      ),
    labels: { keep: t("pause.keep"), confirm: t("pause.confirm"), busy: t("pause.pausing") },
    confirmClass: "btn-primary",
    act: async () => {
      const { channel: paused } = await api("POST", `channels/${encodeURIComponent(channel.id)}/pause`);
      return () => {
        replaceChannel(paused);
        toast(t("pause.done", { name: paused.name }));
        const again = state.cards.get(paused.id);
        if (again) again.pauseButton.focus();
      };
    },
  });
}

// --- whole-page states ----------------------------------------------------------------------------

function gate({ error, title, text, detail, retry }) {
  clearInterval(state.refreshTimer);
  for (const open of document.querySelectorAll("dialog")) open.remove();
  document.getElementById("topbar-slot").replaceChildren();
  const main = document.getElementById("main");
  main.replaceChildren(
    h(
      "section",
      { class: `card gate${error ? " is-error" : ""}`, "aria-labelledby": "gate-title" },
      h("div", { class: "gate-art" }, icon(error ? "wifiOff" : "lock")),
      h("h1", { id: "gate-title", text: title }),
      h("p", { text }),
      retry ? null : h("span", { class: "path", text: t("gate.path") }),
      detail ? h("p", { class: "detail", text: detail }) : null,
      retry
        ? h(
            "button",
            { class: "btn btn-primary", type: "button", onclick: () => location.reload() },
            icon("refresh", "icon-sm"),
            h("span", { class: "btn-label", text: t("gate.retry") }),
          )
        : null,
    ),
  );
  main.removeAttribute("aria-busy");
  main.focus();
}

function signedOut(error, refusedTicket) {
  const kind = refusedTicket ? "link" : state.view !== null ? "expired" : "outside";
  document.documentElement.dataset.state = "signed-out";
  gate({
    title: t({ link: "gate.linkTitle", expired: "gate.expiredTitle", outside: "gate.title" }[kind]),
    text: t({ link: "gate.linkText", expired: "gate.expiredText", outside: "gate.text" }[kind]),
    detail: error && error.message ? t("gate.detail", { reason: codeText(error) || error.message }) : "",
  });
}

function unavailable(error) {
  document.documentElement.dataset.state = "error";
  gate({ error: true, title: t("gate.downTitle"), text: errorText(error), retry: true });
}

// --- start ----------------------------------------------------------------------------------------

function markFirstView() {
  if (!performance.getEntriesByName("bridge:first-view").length) performance.mark("bridge:first-view");
}

async function start() {
  const params = new URLSearchParams(location.hash.slice(1));
  const ticket = params.get("ticket");
  const wanted = params.get("lang") || "";
  if (location.hash) {
    // The ticket must not stay in the address bar, the history or a bookmark; the language may.
    history.replaceState(null, "", `${location.pathname}${location.search}${wanted ? `#lang=${encodeURIComponent(wanted)}` : ""}`);
  }
  const messages = loadMessages(pickLanguage(wanted));

  let overview = null;
  let failure = null;
  try {
    if (ticket) state.session = (await api("POST", "enter", { ticket })).session || "";
    overview = await api("GET", "overview");
  } catch (error) {
    failure = error;
  }
  [state.lang, state.messages] = await messages;
  document.documentElement.lang = state.lang;
  document.title = t("page.title");
  const page = document.getElementById("brand-page");
  page.textContent = t("top.settings");
  page.hidden = false;

  if (failure) {
    if (isSessionError(failure) || (failure instanceof ApiError && failure.status === 400)) {
      // No ticket and no session: the page was not opened from Kommo (or the session ended).
      signedOut(ticket ? failure : null, Boolean(ticket));
    } else {
      unavailable(failure);
    }
  } else {
    state.overview = overview;
    buildLayout();
    renderOverview();
    document.documentElement.dataset.state = "ready";
    scheduleRefresh();
    // After the first view is painted: the platforms take their time to answer.
    requestAnimationFrame(() => setTimeout(() => loadHealth(false), 0));
  }
  // The next frame is painted with the view: mark it just after.
  requestAnimationFrame(() => setTimeout(markFirstView, 0));
}

// A new ticket for a window already open (the same address, another fragment): start over with it.
window.addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("ticket")) location.reload();
});

start();
