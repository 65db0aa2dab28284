window.ran.push('a1');
window.dataLayer.push({event: 'tag-ran', tag: 'a1'});
document.cookie = '_da_id=1; path=/';
document.cookie = '_da_session=2; path=/';
