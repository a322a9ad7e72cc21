// Starts Swagger UI on /docs. A file of its own rather than an inline script, so the
// page's Content-Security-Policy (script-src 'self') holds on /docs too.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // No badge from the public validator: the docs load nothing from outside carepath.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
