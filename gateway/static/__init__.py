"""The web viewer's static files (index.html, app.js, style.css); a package so they ship as package data."""
