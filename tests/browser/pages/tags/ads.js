window.ran.push('ads');
window.dataLayer.push({event: 'tag-ran', tag: 'ads'});
document.cookie = '_ads=1; path=/';
