//# allFunctionsCalledOnLoad
/*! Consent widget */
// (The first line is V8's explicit compile hint: every function here is compiled with the
// script, before DOMContentLoaded, not at its first call; the build keeps it.)
(() => {
  'use strict';
  const W = window, D = document, N = navigator, E = 'essential';
  if (W.Consent) return;
  const me = D.currentScript || D.querySelector('script[data-site]');
  const src = new URL(me.src), base = new URL('.', src).href;
  const site = me.dataset.site || src.searchParams.get('site'), api = base + 'api/v1/sites/' + encodeURIComponent(site) + '/';
  const lang = (D.documentElement.lang || N.language || 'en').toLowerCase();
  // Filled in when this file is built or served: STYLE (the banner's stylesheet) and PART
  // (the second part's version) by static/widget/build.py, CONFIG by the server for
  // /consent.js?site=KEY (the site's config document, so a first visit needs no other
  // request). Unfilled, CONFIG stays this string.
  const STYLE = '@@STYLE@@', CONFIG = '@@CONFIG@@', PART = '@@PART@@';
  const gpc = N.globalPrivacyControl === true;
  const CK = 'consent:cfg:' + site + ':' + lang, QK = 'consent:queue:' + site, SK = 'consent:sync:' + site, NK = 'consent:notice:' + site;
  const MODES = {functional: ['functionality_storage', 'personalization_storage'],
    analytics: ['analytics_storage'], advertising: ['ad_storage', 'ad_user_data', 'ad_personalization']};
  let dl;  // the page's dataLayer (its name may be configured: consentMode below)
  const gtag = function () { dl.push(arguments); };
  const now = () => Math.floor(Date.now() / 1e3);
  const iso = t => t ? new Date(t * 1e3).toISOString() : null;
  const uid = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), b => (b + 256).toString(16).slice(1)).join('');
  const noop = () => {};
  // localStorage may be missing or throw (privacy modes, sandboxed frames): degrade to memory.
  const store = (k, v) => { try { if (v === undefined) return JSON.parse(localStorage.getItem(k)); localStorage.setItem(k, JSON.stringify(v)); } catch (e) {} };
  // This tab's sync mark: 'p' back from the preference center, 'c' checked this session.
  // Without sessionStorage it reads 'c': no check rather than one on every page view.
  const mark = v => { try { return v ? sessionStorage.setItem(SK, v) : sessionStorage.getItem(SK); } catch (e) { return 'c'; } };
  const ready = new Promise(r => D.readyState == 'loading' ? D.addEventListener('DOMContentLoaded', r) : r());
  const hooks = [];
  let cached = store(CK), cfg = cached && cached.c;
  const queue = store(QK) || [];
  // The inlined config serves if it is this site's and in the language the page would ask
  // for (the server picked it from the script URL's `lang` or the browser's languages),
  // unless a check with the server found a newer one (f) while the cached script is fresh.
  const pick = c => { const l = c.locales || [], b = lang.split('-')[0]; return l.includes(lang) ? lang : l.includes(b) ? b : c.locale; };
  if (typeof CONFIG == 'object' && CONFIG.site == site && pick(CONFIG) == CONFIG.locale &&
    !(cached && cached.f && Date.now() - cached.t < cfg.ttl * 1e3)) cached = {t: Date.now(), c: cfg = CONFIG};
  let state, banner, back, cssP, styled, gotCfg, noCfg/*+age*/, age/*-age*/;
  const cfgP = new Promise((r, n) => { gotCfg = r; noCfg = n; });
  cfgP.catch(noop);
  const ran = {};  // categories whose scripts have run: withdrawing one needs a reload

  // ---- the consent cookie: form-urlencoded, format in docs/widget.md
  function load() {
    const n = (cfg ? cfg.cookie.name : 'consent') + '=';
    const p = D.cookie.split('; ').find(x => x.startsWith(n));
    const q = p && new URLSearchParams(p.slice(n.length)), c = {};
    if (!q || q.get('v') != '1' || !q.get('s')) return null;
    for (const [f, v] of [['d', false], ['c', true]]) for (const k of (q.get(f) || '').split('.')) if (k) c[k] = v;
    // a cookie from before device keys gets one now: its first write claims the visitor
    return {s: q.get('s'), k: q.get('k') || uid(), r: q.get('r'), c, p: q.get('p'), t: +q.get('t') || 0, e: +q.get('e') || 0, src: q.get('src'), g: q.get('g') == '1', m: q.get('m') == '1', i: q.get('i')};
  }
  function save() {
    const k = Object.keys(state.c), o = cfg.cookie;
    const q = new URLSearchParams({v: 1, s: state.s, k: state.k, c: k.filter(x => state.c[x]).join('.'),
      d: k.filter(x => !state.c[x]).join('.'), t: state.t, e: state.e, src: state.src, g: state.g ? 1 : 0});
    for (const f of 'rpmi') if (state[f]) q.set(f, state[f] === true ? 1 : state[f]);
    D.cookie = o.name + '=' + q + '; Path=/; Max-Age=' + Math.max(0, state.e - now()) +
      (o.domain ? '; Domain=' + o.domain : '') + '; SameSite=' + (o.sameSite || 'Lax') +
      (location.protocol == 'https:' ? '; Secure' : '');
    store(CK, {t: cached ? cached.t : Date.now(), c: cfg, f: cached && cached.f});  // a choice exists: keep config too
  }

  // ---- what is granted
  const gpcKeys = () => cfg ? cfg.gpc.categories : ['advertising'];
  const keys = () => cfg ? cfg.categories.map(c => c.key) : Object.keys(state ? state.c : {});
  // A stored choice stops counting when it expires or predates a material policy version.
  function valid() {
    if (!state || !state.t) return !!state;
    const m = cfg && cfg.policy.reconsentAfter && Date.parse(cfg.policy.reconsentAfter) / 1e3;
    // m is the version's time rounded up to a whole second (consent/widget_config.py): it
    // counts from the second it falls in, so a version published now applies at once.
    return state.e > now() && !(m && state.t < m && m <= now() + 1);
  }
  // Rules by region (consent/regions.py, docs/regions.md). Code between the region marks is
  // only in consent-optout.js, the build the server sends to opt-out and notice-only regions
  // (static/widget/build.py): there cfg.region lists what is on until the visitor opts out
  // (not for a known minor: sale needs an opt-in, and what the age rule reserves a guardian's
  // consent, consent.minors); its UI and __gpp / __uspapi come from
  // consent-region.js. Other visitors download none of it.
  /*+region*/
  const R = () => cfg && cfg.region;
  const dflt = k => !!R() && !(state && state.c[k] === false) && R().on.includes(k) && !(known() && (gpcKeys().includes(k) || cfg.age && cfg.age.categories.includes(k)));
  /*-region*/
  const has = k => k == E || !(gpc && gpcKeys().includes(k)) && (/*+region*/!(valid() && state.t > 0 && k in state.c) ? dflt(k) : /*-region*/valid() && state.t > 0 && state.c[k] === true);
  const allows = el => el.dataset.category.trim().split(/\s+/).every(has);
  const needsChoice = () => /*+region*/!R() && /*-region*/(!valid() || !state.t || keys().some(k => !(k in state.c)));
  function cats() { const o = {}; for (const k of keys()) o[k] = has(k); return o; }
  function get() {
    return valid() ? {categories: cats(), policyVersion: state.p || null, decidedAt: iso(state.t),
      expiresAt: iso(state.e), source: state.src || null, gpc: state.g, subject: state.s, eventId: state.i || null} : null;
  }
  function modes(on) { const o = {}; for (const k in MODES) for (const m of MODES[k]) o[m] = on && has(k) ? 'granted' : 'denied'; return o; }

  // ---- tags: <script type="text/plain" data-category> and <iframe data-category data-src>
  let chain = Promise.resolve();
  function activate() {
    chain = chain.then(async () => {
      await ready;
      for (const el of D.querySelectorAll('script[type="text/plain"][data-category],iframe[data-category][data-src]')) {
        const on = allows(el), src = el.dataset.src;
        if (el.tagName == 'IFRAME') {
          const cur = el.getAttribute('src');
          if (on ? cur != src : cur && cur != 'about:blank') el.src = on ? src : 'about:blank';
          continue;
        }
        if (!on) continue;
        const s = D.createElement('script');
        for (const a of el.attributes) if (a.name != 'type' && a.name != 'data-src') s.setAttribute(a.name, a.value);
        s.nonce = el.nonce;  // the attribute reads empty under CSP; the property keeps it
        for (const k of el.dataset.category.trim().split(/\s+/)) ran[k] = 1;
        if (src) { s.src = src; await new Promise(r => { s.onload = s.onerror = r; el.replaceWith(s); }); }
        else { s.text = el.text; el.replaceWith(s); }
      }
    }).catch(noop);
  }
  // After any change: Consent Mode update, events, tags on/off, withdrawn cookies and storage
  // keys deleted (by the second part, with the site's details: the first layer lists no cookies).
  let dropped = Promise.resolve();
  const reload = () => dropped.then(() => location.reload());
  function changed(before) {
    const after = cats(), off = Object.keys(before).filter(k => before[k] && !after[k]), d = get();
    gtag('consent', 'update', modes(1));
    W.dispatchEvent(new CustomEvent('consent:change', {detail: d}));
    hooks.forEach(f => f(d));
    if (off.length) dropped = both().then(([x, c]) => x.drop(off, c), noop);
    activate();
    return off.some(k => ran[k]);  // a script that already ran cannot be stopped
  }

  // ---- recording on the server: a persistent queue (localStorage)
  function send(body) {
    queue.push(Object.assign(body, {subject: state.s, key: state.k, policy_version: state.p || undefined,
      locale: cfg.locale, revision: cfg.revision, page_url: location.origin + location.pathname, client_event_id: uid(), gpc: gpc || undefined,
      /*+age*/age: cfg.age && (age || known()) ? (minor() ? 'minor' : 'adult') : undefined, guardian: minor() && age && age.g || undefined/*-age*/}));
    store(QK, queue);
    return flush();
  }
  // Sending (retried, idempotent by client_event_id) is the second part's: a choice comes
  // after the banner. Without that part (offline) the choice waits in the queue.
  const flush = () => part().then(x => x.flush(), e => { throw Error('consent: not recorded yet (' + e.message + ')'); });
  const bg = () => { if (cfg && queue.length) flush().catch(noop); };

  // ---- choices
  function decide(action, c, src) {
    const before = cats(), t = now();
    if (gpc) for (const k of gpcKeys()) c[k] = false;  // the server applies the same rule
    const m = minor();
    /*+age*/
    // age rule: a minor's new grants of these keys wait for a guardian (as on the server)
    // (a box the minor ticks is not a guardian's consent: it waits for the guardian's link)
    if (m && cfg.age && !(age && age.g && cfg.age.self)) for (const k of cfg.age.categories) c[k] = c[k] && !!(state && state.m && state.c[k]);
    /*-age*/
    const any = Object.keys(c).some(k => k != E && c[k]);
    state = {s: state ? state.s : uid(), k: state ? state.k : uid(), r: state && state.r, c, p: cfg.policy.version, t, src, g: gpc || !!(state && state.g), m,
      e: t + 86400 * cfg.lifetimes[any ? 'acceptDays' : 'rejectDays']};
    save();
    mark('c');  // the newest choice is this tab's own: no check with the server this session
    hide();
    const again = changed(before), p = send({action, source: src, categories: action == 'custom' ? c : undefined});
    if (again) p.then(reload, reload);
    return p;
  }
  function choose(action, src, vals) {
    return cfgP.then(() => {
      const c = {}, cur = cats();
      for (const k of keys()) c[k] = k == E || (action == 'custom' ? !!(k in vals ? vals[k] : cur[k]) : action == 'accept_all');
      for (const k in vals) if (!(k in c)) throw Error('unknown category ' + k);  // nothing recorded
      return decide(action, c, src);
    });
  }
  // The categories GPC turns off, off (nothing else decided), by SRC; what was granted before.
  function gpcOff(src) {
    const before = cats();
    state = state || {s: uid(), k: uid(), c: {}, t: 0, e: now() + 86400 * cfg.lifetimes.rejectDays};
    for (const x of gpcKeys()) state.c[x] = false;
    state.src = src;
    return before;
  }
  // GPC: opt out of sale/sharing without asking, recorded once (again only if re-granted).
  function honourGpc() {
    const k = gpcKeys();
    if (!gpc || state && state.g && k.every(x => state.c[x] === false)) return;
    const before = gpcOff('gpc');
    state.g = true;
    save();
    changed(before);
    send({action: 'gpc', source: 'gpc'}).catch(noop);
    if (!needsChoice() /*+region*/&& !R()/*-region*/) show('gpc');  // a standing choice: just say the signal was honoured
  }
  /*+region*/
  // "Your Privacy Choices" (consent-region.js): opting out of sale/sharing is one step,
  // recorded, and honoured like GPC (the same categories off, nothing else decided).
  function optOut() {
    const before = gpcOff('preferences');
    save();
    mark('c');  // as a choice in the banner (decide)
    const again = changed(before), p = send({action: 'opt_out', source: 'preferences'});
    if (again) p.then(reload, reload);  // (after the withdrawn cookies are deleted)
    return p;
  }
  // The region part (static/widget/region.src.js, consent-region.js?v=<its build's hash>):
  // the opt-out view, the banner's stylesheet, __gpp and __uspapi with the server's strings.
  // Loaded once the notice is shown, so none of it comes before the notice.
  let rp;
  const region = () => rp || (rp = fetchPart('consent-region.js?v=' + '@@REGION@@', '__consentRegion').catch(e => { rp = null; throw e; }));
  // The dialog here needs the banner's stylesheet, which comes with the region part, and
  // the strings this build's config leaves to the details (the GPC note's).
  const look = () => Promise.all([region(), details()]).then(([, c]) => { if (c) cfg.strings = Object.assign({}, c.strings, cfg.strings); }, noop);
  // IAB GPP and US Privacy stubs, in place before any tag runs: calls wait in their queue
  // (the IAB stubs' `queue`) until the region part answers them; `ping` meanwhile says the
  // CMP is loading. Framed vendors' calls (postMessage) wait the same way.
  let msg = [];
  function stubs() {
    for (const n of ['__gpp', '__uspapi']) if (!W[n]) (W[n] = (...a) => n == '__gpp' && a[0] == 'ping' ? a[1] && a[1]({gppVersion: '1.1', cmpStatus: 'loading',
      cmpDisplayStatus: 'hidden', signalStatus: 'not ready', supportedAPIs: ['6:uspv1', '7:usnat', '8:usca'], cmpId: 0, sectionList: [],
      applicableSections: [-1], gppString: '', parsedSections: {}}, true) : W[n].queue.push(a)).queue = [];
    W.addEventListener('message', e => msg.call ? msg(e) : msg.length < 50 && msg.push(e));
  }
  // The notice at collection, once and not blocking; the "Your Privacy Choices" link (opt-out
  // only: official wording and icon) in each [data-consent-choices] element, else fixed at
  // the bottom left; the locator frames vendors in iframes look for. Then the region part.
  function notice() {
    const r = R(), T = r.strings, out = r.mode == 'opt-out', RK = 'consent:rn:' + site;
    // (the opt-out icon's place is kept: the region part draws it, consent-region.js)
    const link = c => h('a', {href: '#', class: 'cw-yc' + c, 'data-cw': 'choices', role: 'button', on: e => { e.preventDefault(); region().then(x => x.open()); }}, h('i'), T.link);
    for (const n of ['__gppLocator', '__uspapiLocator']) W.frames[n] || D.body.append(h('iframe', {name: n, title: n, hidden: 1, 'aria-hidden': 'true'}));
    if (out) {
      const at = D.querySelectorAll('[data-consent-choices]');
      at.length ? at.forEach(x => x.append(link(''))) : D.body.append(link(' cw-yc-fixed'));
    }
    if (!store(RK)) say(T.notice, T.link, out && link(''), () => store(RK, 1));
    region().catch(noop);
  }
  // A notice that blocks nothing: TEXT, the policy link, EXTRA, OK (which calls DONE).
  function say(text, label, extra, done) {
    const box = h('div', {class: 'cw-rn', role: 'region', 'aria-label': label}, h('p', null, text, ' ', policy()),
      h('div', null, extra, h('button', {type: 'button', 'data-cw': 'ok', on: () => { box.remove(); done(); }}, S('ok'))));
    D.body.append(box);
  }
  /*-region*/

  // ---- UI (classes only: no inline styles, so it runs under a strict CSP)
  // The stylesheet travels in this script and is adopted through the CSSOM: no request
  // before the banner, no style element, nothing a strict CSP forbids. Browsers without
  // constructable stylesheets load consent.css with a <link> instead.
  const adopt = t => { const s = new CSSStyleSheet(); s.replaceSync(t); D.adoptedStyleSheets = [...D.adoptedStyleSheets, s]; };
  const css = () => cssP || (cssP = new Promise(r => {
    try {
      adopt(STYLE);
      return r(styled = 1);
    } catch (e) {}
    const l = h('link', {rel: 'stylesheet', href: base + 'consent.css'});
    l.onload = l.onerror = r;
    D.head.append(l);
  }));
  function h(tag, attrs, ...kids) {
    const e = D.createElement(tag);
    for (const k in attrs) {
      const v = attrs[k];
      if (typeof v == 'function') e.addEventListener('click', v);
      else if (v != null && v !== false) e.setAttribute(k, v === true ? '' : v);
    }
    e.append(...[].concat(...kids).filter(x => x != null && x !== false));
    return e;
  }
  const S = k => cfg.strings[k] || k;
  const policy = () => cfg.policy.url && h('a', {href: cfg.policy.url}, S('policy'));
  const note = () => gpc && h('p', {class: 'cw-gpc'}, S('gpc'));
  const known = () => me.hasAttribute('data-minor') || !!(state && state.m);
  // The age question and the age rule's part of a choice: only in the builds for sites with an
  // age rule (and the shared consent.js); consent-lean.js, which the server sends to sites
  // without one (consent/widget_config.py), has none of it (static/widget/build.py).
  /*+age*/
  const minor = () => age ? age.m : known();
  // The age question: sites with an age rule, when it asks always or the page flags the visitor
  // (data-age-check). A known minor (data-minor, or answered before) stays one: like the server.
  function ageQ() {
    const a = cfg.age, k0 = known();
    if (!a || !(a.ask == 'always' || k0 || me.hasAttribute('data-age-check'))) return null;
    age = age || {m: k0, g: false};
    const box = (k, t) => h('p', {class: 'cw-age'}, h('label', null,
      h('input', {type: 'checkbox', name: 'cw-' + k, checked: age[k], disabled: k == 'm' && k0, on: e => { age[k] = e.target.checked; }}), ' ', t));
    return [box('m', a.q), box('g', a.g)];
  }
  /*-age*/
  /*+noage*/
  const minor = known, ageQ = noop;
  /*-noage*/
  const refocus = el => { if (el && el.isConnected && el.focus) el.focus(); };
  function hide() { if (banner) { banner.remove(); banner = null; refocus(back); } }
  /*+optin*/
  const btn = (k, f, alt) => h('button', {type: 'button', class: 'cw-b' + (alt ? ' cw-alt' : ''), 'data-cw': k, on: f}, S(k));
  const show = (notice, force) => cfgP.then(css).then(() => paint(notice, force));
  // The banner, built at once: start() calls this directly in DOMContentLoaded's turn when
  // the config is at hand and the stylesheet adopted (no promise hop before the insertion).
  function paint(notice, force) {
    if (banner || !(notice || force || needsChoice())) return;
    back = D.activeElement;
    banner = h('div', {class: 'cw cw-banner', role: 'dialog', 'aria-labelledby': 'cw-bt', 'aria-describedby': 'cw-bd', tabindex: -1},
      h('h2', {class: 'cw-t', id: 'cw-bt'}, S(notice ? notice + 'Title' : 'title')),
      h('p', {id: 'cw-bd'}, notice ? S(notice) : S('text'), ' ', policy()),
      !notice && note(),
      /*+age*/!notice && ageQ(),/*-age*/
      h('div', {class: 'cw-acts'}, notice ? btn('ok', () => hide(store(NK + notice, S(notice)))) : [
        btn('rejectAll', () => choose('reject_all', 'banner').catch(noop)),
        btn('acceptAll', () => choose('accept_all', 'banner').catch(noop)),
        btn('customise', () => prefs(), 1)]));
    D.body.prepend(banner);
    banner.focus();
  }
  /*-optin*/
  /*+region*/
  // No banner where the rules are opt-out or notice-only: an announcement (nt) is told like
  // the notice at collection, and Consent.show() (or a missing choice, should this build
  // meet a config without a region) opens the preferences dialog, which has every choice.
  const show = (notice, force) => notice ? cfgP.then(css).then(() => say(S(notice), S(notice + 'Title'), 0, () => store(NK + notice, S(notice)))) : (force || needsChoice()) && prefs();
  /*-region*/
  // ---- the second part (static/widget/more.src.js, built into consent-more.js): what only
  // comes after the banner (sending choices, the check with the server, the preferences
  // dialog, deleting a withdrawn category's cookies), loaded the first time it is needed,
  // so a first visit downloads none of it before the banner. A <script src> from the
  // consent server: the CSP that allows this file allows it too. X is what it may use.
  const X = {api, base, site, queue, h, S, has, gpcKeys, choose, policy, note, ageQ, refocus, mark, save, load, get, uid, cats, valid, changed, reload,
    keep: () => store(QK, queue), cfg: () => cfg, state: () => state, put: v => { state = v; }, back: () => back,
    renew: () => fetchCfg(1, 3).then(() => { cached.f = 1; store(CK, cached); })/*+region*/, details: () => details(), store, listen: f => { msg.forEach(f); msg = f; }/*-region*/};
  let open, more;
  /*+optin*/
  const part = () => open || (open = new Promise((r, n) => {
    W.__consentPart = f => { delete W.__consentPart; r(f(X)); };
    const s = D.createElement('script');
    s.src = base + 'consent-more.js?v=' + PART;
    s.nonce = me.nonce;  // for a policy that allows the consent server by nonce only
    s.onerror = () => { open = null; s.remove(); n(Error(s.src)); };
    D.head.append(s);
  }));
  /*-optin*/
  /*+region*/
  // The same for both parts here (the plain build, which loads one, keeps it inline: its
  // budget has no byte to spare for sites with every Consent Mode option).
  // A part's script calls window[CB] with a function of X; it resolves with what that returns.
  const fetchPart = (file, cb) => new Promise((r, n) => {
    W[cb] = f => { delete W[cb]; r(f(X)); };
    const s = D.createElement('script');
    s.src = base + file;
    s.nonce = me.nonce;  // for a policy that allows the consent server by nonce only
    s.onerror = () => { s.remove(); n(Error(s.src)); };
    D.head.append(s);
  });
  const part = () => open || (open = fetchPart('consent-more.js?v=' + PART, '__consentPart').catch(e => { open = null; throw e; }));
  /*-region*/
  // The site's details in the page's language (descriptions, services and their cookies,
  // the dialog's texts), for the dialog and for deleting cookies; none offline.
  const details = () => more || (more = fetch(url + '&details=1').then(r => r.json())
    .then(c => c.site == site ? c : null).catch(() => { more = null; }));
  const both = () => Promise.all([part(), details()]);
  const prefs = opener => cfgP.then(css)/*+region*/.then(look)/*-region*/.then(both).then(([x, c]) => x.show(opener, c));

  // ---- back from the preference center (the dialog's link posts the visitor id and device
  // key there, no secret in a URL): what the server holds for this visitor (preference
  // center, the site's backend, an admin, an erasure, expiry, a new policy version)
  // applies before any tag runs; the second part asks. Resolves true when scripts that
  // already ran must be stopped by a reload. Server unreachable: the cookie stands.
  const sync = () => { mark('c'); return state && state.r && !queue.length ? part().then(x => x.sync(), noop) : Promise.resolve(); };

  // ---- start: Consent Mode default first, then the stored choice, then (if needed) the banner
  state = load();
  // Consent Mode: the all-denied default, then the site's own commands (consent/consent_mode.py).
  const cm = cfg && cfg.consentMode || {}, dn = cm.dataLayer || 'dataLayer';
  dl = W[dn] = W[dn] || [];
  gtag('consent', 'default', Object.assign(modes(0), {security_storage: 'granted', wait_for_update: 500}));
  (cm.push || []).forEach(c => gtag.apply(0, c));
  /*+region*/
  if (R()) stubs();
  /*-region*/
  async function start() {
    // back from the preference center: its choice before any tag (only a stored choice has
    // one; a page view without one reads no sessionStorage before the banner)
    if (state && mark() == 'p') await sync();
    if (get() /*+region*/|| R()/*-region*/) gtag('consent', 'update', modes(1));
    gotCfg();
    await ready;
    honourGpc();
    // First: nothing else stands between DOMContentLoaded and the banner. With the config at
    // hand and the stylesheet adopted (a first visit with ?site=KEY) it is built right here.
    if (needsChoice()) /*+optin*/styled ? paint() : /*-optin*/show();
    // a version announced for later (its notice: strings nt, ntTitle): told until its OK
    // (a reload, e.g. after the session check below, must not hide it unread)
    else if (S('nt') != 'nt' && store(NK + 'nt') != S('nt')) show('nt');
    /*+region*/
    if (R()) notice();  // before the tags: the notice is "at collection"
    /*-region*/
    activate();
    bg();
    // Once per browser session, after the page's own load: one small conditional request
    // (with a stored choice only: a page view without one has nothing to check, and no
    // listener of its own when the page's load comes, which on a page with nothing else to
    // load runs in the same task as DOMContentLoaded, before the banner's first frame).
    const check = () => sync().then(r => r ? reload() : needsChoice() && show());
    if (state && mark() != 'c') D.readyState == 'complete' ? check() : W.addEventListener('load', check);
  }
  const url = api + 'config?locale=' + encodeURIComponent(lang);
  // Without any copy the banner cannot show: retry a failed fetch a few times (0.5, 1, 2 s).
  const fetchCfg = (revalidate, tries) => fetch(url, {credentials: 'omit', cache: revalidate ? 'no-cache' : 'default'})
    .then(r => { if (r.status == 404) console.error("consent: unknown site key '" + site + "'"); if (!r.ok) throw Error(r.status); return r.json(); })
    .then(c => { cfg = c; cached = {t: Date.now(), c}; state = load(); if (state) store(CK, cached); }, e => {
      if (cfg || tries > 2 || e.message == 404) throw e;
      return new Promise(r => setTimeout(r, 500 << tries)).then(() => fetchCfg(0, tries + 1));
    });
  if (!state) css();  // first visit: the banner's style is ready before its config
  // A returning visitor's cached configuration is used as is while fresh (no request at
  // all); once stale it is revalidated first, so a new material policy version or
  // category is seen before any tag runs; if the server cannot be reached, the stale
  // copy (or, without one, the cookie alone) still applies the visitor's choice.
  if (cfg && Date.now() - cached.t < (cfg.ttl || 300) * 1e3) start();
  // No config at all (server unreachable, unknown key): the cookie alone applies the choice,
  // and Consent's choices refuse rather than wait for ever.
  else fetchCfg(!!cfg, 0).then(start, e => cfg ? start() : (noCfg(e), get() && (gtag('consent', 'update', modes(1)), activate())));
  W.addEventListener('online', bg);
  // A page restored from the back/forward cache ran its tags already: check, reload if needed.
  // (Listened for from the page's first pagehide, once: the same listener added again is
  // ignored. The pageshow of the first load, which on a page with nothing else to load
  // comes before the banner's first frame, calls nothing.)
  const restored = e => { if (e.persisted && mark() == 'p' && cfg) sync().then(r => r && reload()); };
  W.addEventListener('pagehide', () => W.addEventListener('pageshow', restored));
  D.addEventListener('click', e => {
    const t = e.target.closest && e.target.closest('[data-consent-open]');
    if (t) { e.preventDefault(); prefs(t); }
  });

  W.Consent = {
    version: 1,
    get,
    acceptAll: () => choose('accept_all', 'api'),
    rejectAll: () => choose('reject_all', 'api'),
    set: vals => choose('custom', 'api', vals || {}),
    show: () => show(0, 1),
    showPreferences: () => prefs(),
    /*+region*/
    optOut: () => cfgP.then(optOut),
    // For consent-region.js: the region's config and where this visitor stands.
    region: () => R() && Object.assign({out: gpcKeys().some(k => !has(k)), gpc, minor: known(), policy: cfg.policy.url, cookie: cfg.cookie}, R()),
    /*-region*/
    onChange: f => { const h = d => f(d); hooks.push(h); return () => { const i = hooks.indexOf(h); if (i >= 0) hooks.splice(i, 1); }; },
  };
})();
