/*
 * Messenger Bridge: the Kommo widget of the bridge that connects messengers to Kommo chats.
 *
 * All the bridge's settings (channels, bots, pipelines) live in its own settings window, served by
 * the bridge at {bridge address}/settings/. This widget only opens that window inside Kommo:
 *   - in the integration's settings (a button that opens it in a large modal window),
 *   - on the widget's advanced settings page (Settings -> Messenger Bridge, full page),
 *   - when the integration is added as a lead source of a pipeline, or picked in the WhatsApp window.
 *
 * To open the window the widget asks the bridge for a one-time address: POST {bridge}/settings/api/session
 * through this.$authorizedAjax, so Kommo adds X-Auth-Token (a short-lived token naming the account and
 * the user, signed with the integration's secret key). The body names the user's interface language
 * (APP.lang_id): the window opens in it, and the bridge writes delivery statuses for the account's
 * managers in it. The bridge answers {"url": "..."} and the widget shows that address in an iframe.
 * The widget sends nothing else and stores nothing.
 */
define(['jquery', 'lib/components/base/modal'], function ($, Modal) {
  'use strict';

  // Written by `make widget`: the bridge's public address and the support contact.
  var BUILT_BRIDGE_URL = '@BRIDGE_PUBLIC_URL@';
  var SUPPORT_LINK = '@SUPPORT_LINK@';
  var SUPPORT_EMAIL = '@SUPPORT_EMAIL@';

  var SESSION_PATH = '/settings/api/session';
  var WINDOW_PATH = '/settings/';
  var REQUEST_TIMEOUT_MS = 20000;
  var ROOT = 'messenger-bridge-widget';

  var HTTPS_ADDRESS = /^https:\/\/[a-z0-9.-]+(:\d{1,5})?(\/[^\s?#]*)?$/i;
  var LOCAL_ADDRESS = /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?(\/[^\s?#]*)?$/i;

  // The bridge's address without a trailing slash, or '' when it is not an address the widget can use.
  function normalizeAddress(value) {
    var address = $.trim(String(value || '')).replace(/\/+$/, '');
    return HTTPS_ADDRESS.test(address) || LOCAL_ADDRESS.test(address) ? address : '';
  }

  // True when `url` is a page of the bridge's settings window (same origin, under /settings/).
  function isWindowOf(bridge, url) {
    var page;
    var base;
    try {
      page = new URL(url);
      base = new URL(bridge + WINDOW_PATH);
    } catch (error) {
      return false;
    }
    return page.origin === base.origin && page.pathname.indexOf(base.pathname) === 0;
  }

  var CustomWidget = function () {
    var self = this;
    var modal = null;
    var settingsBody = null;

    // A text from i18n/<language>.json, by its dotted key ('ui.errors.failed').
    function t(key) {
      var parts = key.split('.');
      var node = self.i18n(parts[0]);
      var i;
      for (i = 1; i < parts.length && node; i += 1) {
        node = node[parts[i]];
      }
      return typeof node === 'string' ? node : key;
    }

    // The language of the Kommo user's interface ('en', 'es', 'pt'; Kommo documents APP.lang_id for it),
    // or '' where Kommo does not say.
    function userLanguage() {
      return typeof APP !== 'undefined' && APP && typeof APP.lang_id === 'string' ? APP.lang_id : '';
    }

    function widgetSettings() {
      return self.get_settings() || {};
    }

    // The address an admin saved in the widget's settings, else the one built into the widget.
    function bridgeAddress() {
      return normalizeAddress(widgetSettings().bridge_url) || normalizeAddress(BUILT_BRIDGE_URL);
    }

    // The widget's stylesheet, added once; the version in its address refreshes it after an update.
    function loadStylesheet() {
      var settings = widgetSettings();
      var href = settings.path + '/style.css?v=' + encodeURIComponent(settings.version || '');
      var present = $('link[rel="stylesheet"]').filter(function () {
        return this.getAttribute('href') === href;
      });
      if (!present.length) {
        $('<link>', { rel: 'stylesheet', type: 'text/css', href: href }).appendTo('head');
      }
    }

    function button(text, onClick) {
      return $('<button>', { type: 'button', 'class': ROOT + '__button' }).text(text).on('click', onClick);
    }

    function supportContact() {
      var $contact = $('<p>', { 'class': ROOT + '__support' }).text(t('ui.errors.contact') + ' ');
      if (SUPPORT_LINK) {
        $contact.append(
          $('<a>', { href: SUPPORT_LINK, target: '_blank', rel: 'noopener noreferrer' }).text(SUPPORT_LINK)
        );
      }
      if (SUPPORT_EMAIL) {
        $contact.append(SUPPORT_LINK ? ' · ' : '');
        $contact.append($('<a>', { href: 'mailto:' + SUPPORT_EMAIL }).text(SUPPORT_EMAIL));
      }
      return $contact;
    }

    // A failure the user can act on: what happened, the bridge's own words if it sent any, a way to
    // try again, and who to ask for help.
    function showError($view, message, detail, retry) {
      var $error = $('<div>', { 'class': ROOT + '__error', role: 'alert' });
      $error.append($('<p>', { 'class': ROOT + '__error-message' }).text(message));
      if (detail) {
        $error.append($('<p>', { 'class': ROOT + '__error-detail' }).text(detail));
      }
      if (retry) {
        $error.append(button(t('ui.retry'), retry));
      }
      $error.append(supportContact());
      $view.empty().append($error);
    }

    function failureMessage(xhr) {
      var status = xhr && xhr.status;
      if (!status) {
        return t('ui.errors.unreachable');
      }
      if (status === 401 || status === 403) {
        return t('ui.errors.denied');
      }
      return t('ui.errors.failed');
    }

    function failureDetail(xhr) {
      var answer = xhr && xhr.responseJSON;
      return answer && typeof answer.error === 'string' ? answer.error : '';
    }

    // Asks the bridge for a one-time address of its settings window and shows it in `$view`.
    // One request per call, made only when a view opens or the user presses "Try again".
    function showWindow($view) {
      var bridge = bridgeAddress();
      var retry = function () {
        showWindow($view);
      };
      if (!bridge) {
        showError($view, t('ui.errors.no_url'), '', null);
        return;
      }
      if ($view.data('pending')) {
        return;
      }
      $view.data('pending', true);
      $view.empty().append($('<p>', { 'class': ROOT + '__status', role: 'status' }).text(t('ui.loading')));
      self.$authorizedAjax({
        url: bridge + SESSION_PATH,
        type: 'POST',
        contentType: 'application/json',
        data: JSON.stringify({ lang: userLanguage() }),
        dataType: 'json',
        timeout: REQUEST_TIMEOUT_MS
      }).done(function (answer) {
        var url = answer && typeof answer.url === 'string' ? answer.url : '';
        if (!isWindowOf(bridge, url)) {
          showError($view, t('ui.errors.bad_answer'), '', retry);
          return;
        }
        $view.empty().append($('<iframe>', {
          'class': ROOT + '__frame',
          src: url,
          title: t('ui.frame_title'),
          referrerpolicy: 'no-referrer',
          allow: 'clipboard-write'
        }));
      }).fail(function (xhr) {
        showError($view, failureMessage(xhr), failureDetail(xhr), retry);
      }).always(function () {
        $view.data('pending', false);
      });
    }

    function closeModal() {
      if (modal) {
        modal.destroy();
        modal = null;
      }
    }

    // The settings window in a large Kommo modal window.
    function openModal() {
      closeModal();
      modal = new Modal({
        class_name: ROOT + '-modal',
        init: function ($modalBody) {
          var $view = $('<div>', { 'class': ROOT + '__view' });
          var $close = $('<button>', { type: 'button', 'class': ROOT + '__close', 'aria-label': t('ui.close') })
            .text('×')
            .on('click', closeModal);
          $modalBody
            .trigger('modal:loaded')
            .empty()
            .append($('<div>', { 'class': ROOT + ' ' + ROOT + '--modal' }).append($close, $view))
            .trigger('modal:centrify');
          showWindow($view);
        },
        destroy: function () {
          modal = null;
        }
      });
    }

    // The block under the widget's own fields in its settings: what the window is for, and its button.
    function settingsBlock() {
      var $block = $('<div>', { 'class': ROOT + ' ' + ROOT + '--settings' });
      if (self.get_install_status() === 'installed') {
        $block.append($('<p>', { 'class': ROOT + '__intro' }).text(t('ui.intro')));
        $block.append(button(t('ui.open'), openModal));
      } else {
        $block.append($('<p>', { 'class': ROOT + '__intro' }).text(t('ui.install_first')));
      }
      $block.append($('<p>', { 'class': ROOT + '__hint' }));
      return $block;
    }

    function addressInput() {
      return settingsBody ? settingsBody.find('input[name="bridge_url"]') : $();
    }

    this.callbacks = {
      render: function () {
        return true;
      },

      init: function () {
        loadStylesheet();
        return true;
      },

      bind_actions: function () {
        // Every control binds its own handler when it is built; nothing is bound on the page.
        return true;
      },

      settings: function ($modalBody) {
        var $fields;
        var $input;
        settingsBody = $modalBody;
        loadStylesheet();
        // The address built into the widget is offered as the field's value; the admin can change it.
        $input = addressInput();
        if ($input.length && !$.trim($input.val()) && normalizeAddress(BUILT_BRIDGE_URL)) {
          $input.val(normalizeAddress(BUILT_BRIDGE_URL)).trigger('change');
        }
        $modalBody.find('.' + ROOT + '--settings').remove();
        $fields = $modalBody.find('.widget_settings_block').first();
        ($fields.length ? $fields : $modalBody).append(settingsBlock());
        return true;
      },

      onSave: function () {
        // Never blocks saving (onSave also runs when the widget is switched off); a mistyped address
        // is pointed out so the admin can correct it.
        var $input = addressInput();
        var $hint = settingsBody ? settingsBody.find('.' + ROOT + '__hint') : $();
        var valid = !$input.length || Boolean(normalizeAddress($input.val()));
        $hint.text(valid ? '' : t('ui.url_hint'));
        return true;
      },

      advancedSettings: function () {
        var $area = $('#work-area-' + widgetSettings().widget_code);
        var $view = $('<div>', { 'class': ROOT + '__view' });
        loadStylesheet();
        $area.empty().append($('<div>', { 'class': ROOT + ' ' + ROOT + '--page' }).append($view));
        showWindow($view);
        return true;
      },

      onAddAsSource: function () {
        // Channels, and the pipeline each one feeds, are chosen in the bridge's settings window.
        openModal();
        return true;
      },

      destroy: function () {
        closeModal();
        settingsBody = null;
        $('.' + ROOT).remove();
      }
    };

    return this;
  };

  return CustomWidget;
});
