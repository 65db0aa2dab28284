/*! Consent widget, region part: the opt-out view, IAB GPP and US Privacy APIs; docs/regions.md */
// Loaded by consent-optout.js (the first layer for visitors whose region has opt-out or
// notice-only rules, consent/regions.py) once its notice at collection and "Your Privacy
// Choices" link are shown, so a first visit downloads none of this before them. The first
// layer's stubs queued the __gpp / __uspapi calls made meanwhile (and framed vendors'
// postMessage calls); this part answers them and every later call. The server encodes the
// GPP and US Privacy strings (consent/gpp.py): they and this part's texts come with the
// site's details (the config with details=1, which the dialog uses too), kept in
// localStorage per site revision, region and language so that later page views ask for
// nothing. This part picks the string that fits where the visitor stands and keeps it in
// cookies for the site's backend. It also carries the banner's stylesheet, which the
// opt-out build lacks (its banner and dialog wait for this part).
window.__consentRegion(X => {
  'use strict';
  const W = window, D = document, C = W.Consent, {h, policy} = X, noop = () => {};
  const STYLE = '@@STYLE@@';
  // The banner's styles through the CSSOM; browsers without constructable stylesheets
  // already have all of consent.css by a <link>.
  try {
    const s = new CSSStyleSheet();
    s.replaceSync(STYLE);
    D.adoptedStyleSheets = [...D.adoptedStyleSheets, s];
  } catch (e) {}
  const now = () => C.region && C.region();
  const first = now();
  if (!first || W.__gpp && W.__gpp.region) return {open: noop};
  const opt = first.mode == 'opt-out', cfg = X.cfg();
  const listeners = {};
  let next = 1, view, data = null, got, fail;
  // What the details bring: {strings, gpp}; null until they are here (opt-out regions only:
  // notice-only regions have no GPP section and no opt-out view).
  const here = new Promise((r, n) => { got = r; fail = n; });
  here.catch(noop);
  const S = k => data && data.strings[k] || first.strings[k] || k;

  // ---- where the visitor stands: n (not opted out), o (opted out, or a known minor), g (GPC)
  const cur = () => { const r = now(); return data && data.gpp && data.gpp[r.gpc ? 'g' : r.out || r.minor ? 'o' : 'n']; };
  function ping() {
    const g = cur();
    return {gppVersion: '1.1', cmpStatus: 'loaded', cmpDisplayStatus: view && view.open ? 'visible' : 'hidden',
      signalStatus: 'ready', supportedAPIs: ['6:uspv1', '7:usnat', '8:usca'], cmpId: 0,
      sectionList: g ? g.sid : [], applicableSections: g ? g.sid.filter(i => i != 6) : [-1],
      gppString: g ? g.gpp : 'DBAA', parsedSections: g ? g.sections : {}};
  }

  // ---- the IAB GPP CMP API (version 1.1): __gpp(command, callback, parameter, version)
  function gpp(cmd, cb, p) {
    const f = typeof cb == 'function' ? cb : noop, g = cur(), secs = g ? g.sections : {};
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
    const f = typeof cb == 'function' ? cb : noop, g = cur();
    if (cmd == 'getUSPData') return f({version: 1, uspString: g ? g.usp : '1---'}, true);
    return f(null, false);
  }

  // ---- framed vendors find the API through the locator frames (the first layer made
  // them) and call it by postMessage; the first layer kept what came before this part
  function message(e) {
    let m = e.data;
    try { if (typeof m == 'string' && m.indexOf('Call') > 0) m = JSON.parse(m); } catch (x) { return; }
    if (!m || typeof m != 'object' || !e.source) return;
    const str = typeof e.data == 'string', reply = o => e.source.postMessage(str ? JSON.stringify(o) : o, '*');
    const g = m.__gppCall, u = m.__uspapiCall;
    if (g) W.__gpp(g.command, (v, ok) => reply({__gppReturn: {returnValue: v, success: ok, callId: g.callId}}), g.parameter, g.version);
    if (u) W.__uspapi(u.command, u.version, (v, ok) => reply({__uspapiReturn: {returnValue: v, success: ok, callId: u.callId}}));
  }

  // ---- for the site's backend: the strings in first-party cookies (gpp, gpp_sid, usprivacy)
  function cookies() {
    const g = cur(), o = now().cookie || {};
    const tail = '; Path=/; Max-Age=' + (g ? 31536000 : 0) + (o.domain ? '; Domain=' + o.domain : '') +
      '; SameSite=Lax' + (location.protocol == 'https:' ? '; Secure' : '');
    D.cookie = 'gpp=' + (g ? g.gpp : '') + tail;
    D.cookie = 'gpp_sid=' + (g ? g.sid.join(',') : '') + tail;
    D.cookie = 'usprivacy=' + (g ? g.usp : '') + tail;
  }

  function changed() {
    cookies();
    const g = cur(), p = ping();
    for (const id in listeners) {
      for (const s of g ? Object.keys(g.sections) : []) listeners[id]({eventName: 'sectionChange', listenerId: +id, data: s, pingData: p}, true);
      listeners[id]({eventName: 'signalStatus', listenerId: +id, data: 'ready', pingData: p}, true);
    }
  }

  // Take over from the stubs (or a page's own IAB stub): answer what they queued, in order.
  function start() {
    const q = [W.__gpp && W.__gpp.queue || [], W.__uspapi && W.__uspapi.queue || []];
    W.__gpp = gpp;
    W.__uspapi = usp;
    q[0].forEach(a => gpp(...a));
    q[1].forEach(a => usp(...a));
    X.listen(message);
    cookies();
    C.onChange(changed);
  }

  // ---- the strings: from this browser's copy for this site revision, region and
  // language, else with the site's details (one request, cached like the config)
  const RK = 'consent:rg:' + cfg.site, id = [cfg.revision, first.code, cfg.locale].join();
  function load() {
    const kept = X.store(RK);
    if (kept && kept.id == id) return got(data = kept.r);
    X.details().then(c => {
      if (!c || !c.region || !c.region.gpp) throw Error('no region details');
      got(data = c.region);
      X.store(RK, {id, r: {strings: data.strings, gpp: data.gpp}});
    }).catch(e => {
      fail(e);
      // offline: the calls stay queued until the network is back
      W.addEventListener('online', load, {once: true});
    });
  }
  // Notice-only regions: no GPP section applies, nothing to fetch.
  if (opt) { load(); here.then(start, noop); } else start();

  // ---- the opt-out icon in each "Your Privacy Choices" link, in the place the first layer
  // kept for it: a pill, a check on its white side and a cross on its blue side
  const svg = (t, a, ...k) => {
    const e = D.createElementNS('http://www.w3.org/2000/svg', t);
    for (const n in a) e.setAttribute(n, a[n]);
    e.append(...k);
    return e;
  };
  if (opt) for (const i of D.querySelectorAll('[data-cw=choices] i')) i.replaceChildren(
    svg('svg', {viewBox: '0 0 30 14', width: '30', height: '14', 'aria-hidden': 'true', focusable: 'false', fill: 'none', 'stroke-width': '1.6', 'stroke-linecap': 'round'},
      svg('rect', {x: '.5', y: '.5', width: '29', height: '13', rx: '6.5', fill: '#06f', stroke: '#06f'}),
      svg('path', {d: 'M7 1.5h9.5L12.6 12.5H7a5.5 5.5 0 0 1 0-11z', fill: '#fff'}),
      svg('path', {d: 'M4.2 7.2l2.4 2.3 4.6-4.8', stroke: '#06f'}),
      svg('path', {d: 'M18.6 4.4l5 5.2m0-5.2l-5 5.2', stroke: '#fff'})));

  // ---- the opt-out view, from the link (the first layer shows the link and the notice)
  function open() {
    if (view && view.open) return;
    const r = now(), out = r.out || r.gpc;
    view = h('dialog', {class: 'cw cw-ov', 'aria-labelledby': 'cw-ovt'},
      h('h2', {class: 'cw-t', id: 'cw-ovt'}, S('title')),
      h('p', null, S('text'), ' ', policy()),
      r.gpc ? h('p', {class: 'cw-done cw-gpc'}, S('gpc')) : out ? h('p', {class: 'cw-done'}, S('done')) : null,
      h('div', {class: 'cw-acts'},
        !out && h('button', {type: 'button', class: 'cw-b', 'data-cw': 'optOut', on: () => { C.optOut().catch(noop); view.close(); }}, S('optOut')),
        h('button', {type: 'button', class: 'cw-b cw-alt', 'data-cw': 'more', on: () => { view.close(); C.showPreferences(); }}, S('more')),
        h('button', {type: 'button', class: 'cw-b cw-alt', 'data-cw': 'close', on: () => view.close()}, S('close'))));
    view.addEventListener('close', () => view.remove());
    D.body.append(view);
    view.showModal();
  }
  // (its texts come with the details: offline, the view opens with the words it has)
  return {open: () => here.then(open, open)};
});
