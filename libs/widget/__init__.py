"""The Kommo widget: `make widget` builds `dist/widget.zip` from `widget/` (see `libs.widget.build`)."""
