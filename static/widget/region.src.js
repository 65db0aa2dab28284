/*! Consent widget, region part: "Your Privacy Choices", IAB GPP and US Privacy APIs; docs/regions.md */
// Loaded by consent.js only for visitors whose region has opt-out or notice-only rules
// (consent/regions.py). The server encodes the GPP and US Privacy strings (consent/gpp.py):
// this part only answers __gpp / __uspapi with the one that fits where the visitor stands,
// keeps them in cookies for the site's backend, and shows the link and the opt-out view.
(() => {
  'use strict';
  const W = window, D = document, C = W.Consent, SITE = C && C.region && C.region();
  if (!SITE || W.__gpp && W.__gpp.region) return;
  const S = k => SITE.strings[k] || k;
  const NS = 'http://www.w3.org/2000/svg', RK = 'consent:rn:' + location.host;
  const listeners = {};
  let next = 1, view;

  // ---- where the visitor stands: n (not opted out), o (opted out, or a known minor), g (GPC)
  const now = () => C.region();
  const cur = () => { const r = now(); return r.gpp && r.gpp[r.gpc ? 'g' : r.out || r.minor ? 'o' : 'n']; };
  function ping() {
    const g = cur();
    return {gppVersion: '1.1', cmpStatus: 'loaded', cmpDisplayStatus: view && view.open ? 'visible' : 'hidden',
      signalStatus: 'ready', supportedAPIs: ['6:uspv1', '7:usnat', '8:usca'], cmpId: 0,
      sectionList: g ? g.sid : [], applicableSections: g ? g.sid.filter(i => i != 6) : [-1],
      gppString: g ? g.gpp : 'DBAA', parsedSections: g ? g.sections : {}};
  }

  // ---- the IAB GPP CMP API (version 1.1): __gpp(command, callback, parameter, version)
  function gpp(cmd, cb, p) {
    const f = typeof cb == 'function' ? cb : () => {}, g = cur(), secs = g ? g.sections : {};
    if (cmd == 'ping') return f(ping(), true);
    if (cmd == 'addEventListener') {
      const id = next++;
      listeners[id] = f;
      return f({eventName: 'listenerRegistered', listenerId: id, data: true, pingData: ping()}, true);
    }
    if (cmd == 'removeEventListener') { const had = p in listeners; delete listeners[p]; return f(had, true); }
    if (cmd == 'hasSection') return f(!!secs[p], true);
    if (cmd == 'getSection') return f(secs[p] || null, true);
    if (cmd == 'getField') {
      const [name, field] = String(p).split('.'), s = secs[name];
      return f(s && field in s ? s[field] : null, true);
    }
    return f(null, false);
  }
  gpp.region = 1;
  // US Privacy (uspv1), for vendors that have not moved to GPP: "1---" where it does not apply.
  function usp(cmd, version, cb) {
    const f = typeof cb == 'function' ? cb : () => {}, g = cur();
    if (cmd == 'getUSPData') return f({version: 1, uspString: g ? g.usp : '1---'}, true);
    return f(null, false);
  }
  // Calls a page's own stub queued before this part loaded (IAB stubs keep them in .queue).
  const queued = W.__gpp && W.__gpp.queue || [];
  W.__gpp = gpp;
  W.__uspapi = usp;
  for (const a of queued) gpp.apply(0, a);

  // ---- frames: vendors in iframes find the API through the locator frames, by postMessage
  function locator(name) {
    if (W.frames[name]) return;
    const f = D.createElement('iframe');
    f.name = name;
    f.title = name;
    f.hidden = true;
    f.setAttribute('aria-hidden', 'true');
    D.body.append(f);
  }
  W.addEventListener('message', e => {
    let m = e.data;
    try { if (typeof m == 'string' && m.indexOf('Call') > 0) m = JSON.parse(m); } catch (x) { return; }
    if (!m || typeof m != 'object' || !e.source) return;
    const str = typeof e.data == 'string', reply = o => e.source.postMessage(str ? JSON.stringify(o) : o, '*');
    const g = m.__gppCall, u = m.__uspapiCall;
    if (g) gpp(g.command, (v, ok) => reply({__gppReturn: {returnValue: v, success: ok, callId: g.callId}}), g.parameter, g.version);
    if (u) usp(u.command, u.version, (v, ok) => reply({__uspapiReturn: {returnValue: v, success: ok, callId: u.callId}}));
  });

  // ---- for the site's backend: the strings in first-party cookies (gpp, gpp_sid, usprivacy)
  function cookies() {
    const g = cur(), o = now().cookie || {};
    const tail = '; Path=/; Max-Age=' + (g ? 31536000 : 0) + (o.domain ? '; Domain=' + o.domain : '') +
      '; SameSite=Lax' + (location.protocol == 'https:' ? '; Secure' : '');
    D.cookie = 'gpp=' + (g ? g.gpp : '') + tail;
    D.cookie = 'gpp_sid=' + (g ? g.sid.join(',') : '') + tail;
    D.cookie = 'usprivacy=' + (g ? g.usp : '') + tail;
  }

  // ---- UI: the link (official wording and opt-out icon), the opt-out view, the notice
  const css = '.cw-yc{display:inline-flex;align-items:center;gap:.4em;color:inherit;font:inherit}' +
    '.cw-yc svg{width:30px;height:14px;flex:none}' +
    '.cw-yc-fixed{position:fixed;left:1rem;bottom:1rem;z-index:2147483000;background:#fff;color:#0b3d91;padding:.4em .7em;border-radius:.5em;box-shadow:0 1px 6px #0004;font:14px/1.3 system-ui,sans-serif}' +
    '.cw-rn{position:fixed;left:1rem;right:1rem;bottom:3.5rem;z-index:2147483000;max-width:40rem;background:#fff;color:#111;padding:.8em 1em;border-radius:.5em;box-shadow:0 2px 12px #0005;font:14px/1.4 system-ui,sans-serif}' +
    '.cw-ov{max-width:32rem;font:15px/1.45 system-ui,sans-serif}.cw-ov .cw-done{font-weight:600}';
  try { const s = new CSSStyleSheet(); s.replaceSync(css); D.adoptedStyleSheets = [...D.adoptedStyleSheets, s]; } catch (e) {}
  function el(tag, attrs, ...kids) {
    const e = D.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (typeof v == 'function') e.addEventListener('click', v);
      else if (v != null && v !== false) e.setAttribute(k, v === true ? '' : v);
    }
    e.append(...kids.filter(x => x != null && x !== false));
    return e;
  }
  function svg(tag, attrs, ...kids) {
    const e = D.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    e.append(...kids);
    return e;
  }
  // The opt-out icon: a pill, a check on its white side and a cross on its blue side.
  const icon = () => svg('svg', {viewBox: '0 0 30 14', 'aria-hidden': 'true', focusable: 'false'},
    svg('rect', {x: '.5', y: '.5', width: '29', height: '13', rx: '6.5', fill: '#06f', stroke: '#06f'}),
    svg('path', {d: 'M7 1.5h9.5L12.6 12.5H7a5.5 5.5 0 0 1 0-11z', fill: '#fff'}),
    svg('path', {d: 'M4.2 7.2l2.4 2.3 4.6-4.8', fill: 'none', stroke: '#06f', 'stroke-width': '1.6', 'stroke-linecap': 'round'}),
    svg('path', {d: 'M18.6 4.4l5 5.2m0-5.2l-5 5.2', fill: 'none', stroke: '#fff', 'stroke-width': '1.6', 'stroke-linecap': 'round'}));
  const link = cls => el('a', {href: '#', class: 'cw-yc' + (cls || ''), 'data-cw': 'choices', role: 'button', click: e => { e.preventDefault(); open(); }}, icon(), S('link'));
  const policy = () => now().policy && el('a', {href: now().policy}, S('policy'));

  function open() {
    if (view && view.open) return;
    const r = now(), out = r.out || r.gpc;
    view = el('dialog', {class: 'cw cw-ov', 'aria-labelledby': 'cw-ovt'},
      el('h2', {class: 'cw-t', id: 'cw-ovt'}, S('title')),
      el('p', null, S('text'), ' ', policy()),
      r.gpc ? el('p', {class: 'cw-done cw-gpc'}, S('gpc')) : out ? el('p', {class: 'cw-done'}, S('done')) : null,
      el('div', {class: 'cw-acts'},
        !out && el('button', {type: 'button', class: 'cw-b', 'data-cw': 'optOut', click: () => { C.optOut().catch(() => {}); view.close(); }}, S('optOut')),
        el('button', {type: 'button', class: 'cw-b cw-alt', 'data-cw': 'more', click: () => { view.close(); C.showPreferences(); }}, S('more')),
        el('button', {type: 'button', class: 'cw-b cw-alt', 'data-cw': 'close', click: () => view.close()}, S('close'))));
    view.addEventListener('close', () => view.remove());
    D.body.append(view);
    view.showModal();
  }

  // The notice at collection, once, without blocking anything; the link stays.
  function notice() {
    let seen;
    try { seen = localStorage.getItem(RK); } catch (e) { seen = 1; }
    if (seen) return;
    const box = el('div', {class: 'cw cw-rn', role: 'region', 'aria-label': S('title')},
      el('p', null, S('notice'), ' ', policy()),
      el('div', {class: 'cw-acts'}, SITE.mode == 'opt-out' && link(), el('button', {type: 'button', class: 'cw-b', 'data-cw': 'ok', click: () => {
        try { localStorage.setItem(RK, '1'); } catch (e) {}
        box.remove();
      }}, S('ok'))));
    D.body.append(box);
  }

  function changed() {
    cookies();
    const g = cur(), p = ping();
    for (const id in listeners) {
      for (const s of g ? Object.keys(g.sections) : []) listeners[id]({eventName: 'sectionChange', listenerId: +id, data: s, pingData: p}, true);
      listeners[id]({eventName: 'signalStatus', listenerId: +id, data: 'ready', pingData: p}, true);
    }
  }
  C.onChange(changed);

  function ui() {
    locator('__gppLocator');
    locator('__uspapiLocator');
    cookies();
    // The site's own place for the link (its footer), else a small fixed link.
    const spots = D.querySelectorAll('[data-consent-choices]');
    if (SITE.mode == 'opt-out') {
      if (spots.length) spots.forEach(s => s.append(link()));
      else D.body.append(link(' cw-yc-fixed'));
    }
    notice();
  }
  D.readyState == 'loading' ? D.addEventListener('DOMContentLoaded', ui) : ui();
})();
