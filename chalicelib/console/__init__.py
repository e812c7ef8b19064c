"""The CS console: server-rendered pages (Jinja2) for the people on shift, served by the same
app as the APIs, reading and changing through the same flows the CS API calls (no second copy
of a rule). `routes.py` is the blueprint (a few lines a route), `web.py` what a page takes from
the request (session, form, CSRF) and gives back (HTML with its security headers), `views.py`
gathers each page's data, `render.py` the templates and the two languages. No JavaScript: forms
post and the server answers with the next page, which works on any phone's IM browser."""
